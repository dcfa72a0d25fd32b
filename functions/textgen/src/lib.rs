//! Generates text one character at a time with the `textgen` model
//! (scripts/textgen_model.py) and streams each character as a Server-Sent
//! Event as soon as it is made: `{"index": i, "token": "c"}`, then `[DONE]`.
//!
//! Query: `n` characters (default 64, at most 4096), `prompt` (default
//! `"The "`), and `seed`: sampled from the model's distribution with that
//! seed (the same seed, the same text), or the most likely character each
//! step without one.

use muon_sdk::nn::Model;
use muon_sdk::{BodyWriter, Request, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The model's characters: the newline, then printable ASCII.
const VOCAB: &[u8] =
    b"\n !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
/// Characters the model reads.
const CONTEXT: usize = 8;

#[muon_sdk::streaming_handler]
fn generate(req: Request, mut out: BodyWriter) {
    let n = req.query_param("n").and_then(|v| v.parse::<usize>().ok()).unwrap_or(64).min(4096);
    let mut rng = req.query_param("seed").and_then(|v| v.parse::<u64>().ok()).map(ChaCha8Rng::seed_from_u64);
    let prompt = req.query_param("prompt").unwrap_or_else(|| "The ".to_owned());
    let model = match Model::load("textgen") {
        Ok(model) => model,
        Err(err) => {
            out.start(422, &[("content-type", "text/plain")]);
            out.write(format!("cannot load the textgen model: {err}\n"));
            return;
        }
    };
    let mut context: Vec<usize> = vec![token(b' '); CONTEXT];
    context.extend(prompt.bytes().map(token));
    out.event_stream();
    for index in 0..n {
        let window = &context[context.len() - CONTEXT..];
        let logits = match next_logits(&model, window) {
            Ok(logits) => logits,
            Err(err) => {
                out.write(muon_sdk::sse::named("error", &err));
                return;
            }
        };
        let next = match rng.as_mut() {
            // 53 random bits: a uniform float in [0, 1).
            Some(rng) => sample(&logits, (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64),
            None => argmax(&logits),
        };
        let character = char::from(VOCAB[next]);
        let event = serde_json::json!({ "index": index, "token": character.to_string() });
        out.event(&event.to_string());
        context.push(next);
    }
    out.event("[DONE]");
}

/// The index of `byte` in the vocabulary; anything else reads as a space.
fn token(byte: u8) -> usize {
    VOCAB.iter().position(|&c| c == byte).unwrap_or(1)
}

fn next_logits(model: &Model, window: &[usize]) -> Result<Vec<f32>, String> {
    let mut one_hot = vec![0.0f32; CONTEXT * VOCAB.len()];
    for (position, &id) in window.iter().enumerate() {
        one_hot[position * VOCAB.len() + id] = 1.0;
    }
    let input = Tensor::from_f32([1, (CONTEXT * VOCAB.len()) as u32], &one_hot);
    let outputs = model.run(&[("context", input)]).map_err(|err| err.to_string())?;
    let logits = outputs.get("logits").ok_or("the model has no `logits` output")?;
    let logits = logits.to_f32().map_err(|err| err.to_string())?;
    if logits.len() == VOCAB.len() { Ok(logits) } else { Err(format!("{} logits, not {}", logits.len(), VOCAB.len())) }
}

fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// Draws from softmax(`logits`) with `unit` in [0, 1).
fn sample(logits: &[f32], unit: f64) -> usize {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - top).exp()).collect();
    let mut target = unit * weights.iter().sum::<f64>();
    for (i, weight) in weights.iter().enumerate() {
        target -= weight;
        if target < 0.0 {
            return i;
        }
    }
    weights.len() - 1
}
