//! Size bounds for a model's tensors, read from its ONNX graph before any
//! backend sees it.
//!
//! Backends allocate what a graph asks for: they fold constant subgraphs
//! when they load a model (a 189-byte `ConstantOfShape([16384, 16384])` is a
//! 1 GiB tensor at upload), and they size tensors at compute from values the
//! guest supplies (`ConstantOfShape(n)`). Neither backend bounds either, and
//! the host's memory is shared by every tenant. So muon infers the shape of
//! every tensor it can from the graph itself, with a small evaluator for the
//! integer arithmetic that computes shapes:
//!
//! - at load, a graph over the node bound is refused, and so is a tensor
//!   computed from constants alone (which backends fold) that is larger than
//!   the fold bound, or whose size cannot be bounded although it feeds a
//!   tensor generator (`ConstantOfShape`, `Expand`, `Tile`, `Range`, ...);
//! - at compute, with the guest's actual dimensions and small integer
//!   inputs, every tensor whose size is then known must fit in the calling
//!   function's memory limit, or the compute is refused before it starts.
//!
//! What this cannot see: tensors behind operators it has no shape rule for
//! (data-dependent ones such as `NonZero`, control flow bodies, custom
//! domains) are not checked, and the sum of live tensors is not bounded,
//! only each tensor. `docs/BENCHMARKS.md` records what remains.

mod proto;
mod rules;

use std::collections::HashMap;
use std::sync::Mutex;

use tract_onnx::pb;
use tract_onnx::prelude::Framework as _;

use super::error::{ErrorCode, NnError};
use super::signature::{Dim, Signature};
use super::tensor::{ElementType, HostTensor};
use proto::{build_node, element_bytes, input_fact, shape_fact, sparse_fact, tensor_fact};
use rules::infer;

/// Integer and float tensors up to this many elements have their values
/// tracked: enough for shapes, scales and the like.
const SMALL: u64 = 1024;

/// Limits a model must meet to be loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    /// Most nodes in the graph, subgraphs included.
    pub max_nodes: usize,
    /// Largest tensor constant folding may make, in bytes (a model file
    /// larger than this may fold tensors up to its own size).
    pub max_fold_bytes: u64,
    /// Largest tensor any function may hold (the largest memory limit a
    /// function may have), in bytes.
    pub max_tensor_bytes: u64,
}

/// A model's graph, reduced to what sizing its tensors needs.
pub struct ModelBounds {
    nodes: Vec<Node>,
    slots: usize,
    constants: Vec<(usize, Fact)>,
    inputs: Vec<Option<usize>>,
    /// Whether the graph has control flow or custom operators, whose work
    /// the inputs' dimensions do not fix.
    opaque: bool,
    /// Inputs' element types and dimensions, with a memory limit, that a
    /// compute passes sized whatever the inputs' values: the walk need not
    /// be repeated for them. Kept exact, not hashed, so that no crafted
    /// dimensions can pass for ones that were checked.
    passed: Mutex<Vec<Passed>>,
}

/// What sizing a compute found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSize {
    /// Whether the inputs' dimensions fix the compute's work: no control
    /// flow or custom operator, and every tensor's size known from them
    /// (none hangs on the inputs' values, as `NonZero`'s does).
    pub fixed: bool,
    /// The bytes of every tensor the compute makes, added up, when each is
    /// known: more than the backend holds for them at once, though a
    /// kernel's own scratch space is not counted.
    pub made_bytes: Option<u64>,
}

/// Input shapes that passed sized by themselves under a memory limit.
struct Passed {
    shapes: InputShapes,
    limit: u64,
    made_bytes: u64,
}

/// Each input's element type and dimensions.
type InputShapes = Vec<(ElementType, Vec<u32>)>;

/// How many of a model's checked input shapes are remembered: enough for
/// a training loop's full batches, its last one and an evaluation.
const PASSED_KEPT: usize = 8;

/// What is known of one tensor.
#[derive(Debug, Clone, Default)]
struct Fact {
    shape: Option<Vec<u64>>,
    /// The values of a small numeric tensor, when known.
    value: Option<Vec<f64>>,
    /// ONNX data type; 0 when unknown.
    dtype: i32,
    /// Computed from a guest input (so per compute), not from constants
    /// alone (so folded at load).
    from_input: bool,
}

impl Fact {
    fn elements(&self) -> Option<u128> {
        let shape = self.shape.as_ref()?;
        Some(shape.iter().try_fold(1u128, |n, &d| n.checked_mul(u128::from(d))).unwrap_or(u128::MAX))
    }

    fn bytes(&self) -> Option<u128> {
        self.elements().map(|n| n.saturating_mul(element_bytes(self.dtype)))
    }

    fn with_shape(shape: Vec<u64>, dtype: i32) -> Self {
        Self { shape: Some(shape), value: None, dtype, from_input: false }
    }

    fn with_value(value: Vec<f64>, dtype: i32) -> Self {
        Self { shape: Some(vec![value.len() as u64]), value: Some(value), dtype, from_input: false }
    }

    fn ints(&self) -> Option<Vec<i64>> {
        self.value.as_ref().map(|v| v.iter().map(|&x| x as i64).collect())
    }

    fn dims(&self) -> Option<Vec<u64>> {
        self.value.as_ref()?.iter().map(|&x| (x >= 0.0).then_some(x as u64)).collect()
    }
}

struct Node {
    name: String,
    op: String,
    inputs: Vec<Option<usize>>,
    outputs: Vec<Option<usize>>,
    ints: HashMap<String, Vec<i64>>,
    /// A `Constant`'s value, or a `ConstantOfShape`'s fill value.
    tensor: Option<Fact>,
}

impl Node {
    fn int(&self, name: &str) -> Option<i64> {
        self.ints.get(name).and_then(|v| v.first().copied())
    }
}

impl ModelBounds {
    /// Parses `bytes` and checks what loading them would fold, under `limits`.
    pub fn analyse(bytes: &[u8], signature: &Signature, limits: LoadLimits) -> Result<Self, NnError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|err| NnError::new(ErrorCode::InvalidEncoding, format!("not a valid ONNX model: {err:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| NnError::new(ErrorCode::InvalidEncoding, "the ONNX model has no graph"))?;
        let nodes = count_nodes(graph);
        if nodes > limits.max_nodes {
            return Err(NnError::new(
                ErrorCode::TooLarge,
                format!(
                    "the model has {nodes} nodes; this host loads models of at most {} nodes (nn max_nodes)",
                    limits.max_nodes
                ),
            ));
        }
        let bounds = Self::build(graph, signature)?;
        let fold_limit = u128::from(limits.max_fold_bytes.max(bytes.len() as u64));
        bounds.check_folding(signature, fold_limit, u128::from(limits.max_tensor_bytes))?;
        Ok(bounds)
    }

    fn build(graph: &pb::GraphProto, signature: &Signature) -> Result<Self, NnError> {
        let index = |name: &str, slots: &mut HashMap<String, usize>| -> Option<usize> {
            if name.is_empty() {
                return None;
            }
            let next = slots.len();
            Some(*slots.entry(name.to_owned()).or_insert(next))
        };
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut constants = Vec::new();
        for tensor in &graph.initializer {
            if let Some(at) = index(&tensor.name, &mut slots) {
                constants.push((at, tensor_fact(tensor)));
            }
        }
        for sparse in &graph.sparse_initializer {
            let name = sparse.values.as_ref().map_or("", |v| v.name.as_str());
            if let Some(at) = index(name, &mut slots) {
                constants.push((at, sparse_fact(sparse)));
            }
        }
        let inputs = signature.inputs.iter().map(|spec| index(&spec.name, &mut slots)).collect();
        let mut nodes = Vec::with_capacity(graph.node.len());
        for node in &graph.node {
            let inputs = node.input.iter().map(|name| index(name, &mut slots)).collect();
            let outputs = node.output.iter().map(|name| index(name, &mut slots)).collect();
            nodes.push(build_node(node, inputs, outputs));
        }
        let nodes = topological(nodes, slots.len(), &constants)?;
        let opaque =
            nodes.iter().any(|node| matches!(node.op.as_str(), "Loop" | "Scan" | "If") || node.op.contains('.'));
        Ok(Self { nodes, slots: slots.len(), constants, inputs, opaque, passed: Mutex::default() })
    }

    /// Refuses tensors that constant folding at load would make too large.
    ///
    /// Backends also fold what follows from the inputs' declared shapes
    /// (`Shape(x)` when x is `[N, 100000]` gives a constant 100000 to tract),
    /// so the graph is sized as for the smallest inputs, every symbolic
    /// dimension 1: a tensor that is too large even then is refused, against
    /// `max_tensor` (no function could compute it) when it depends on an
    /// input, against the fold `limit` when it comes from constants alone.
    fn check_folding(&self, signature: &Signature, limit: u128, max_tensor: u128) -> Result<(), NnError> {
        let inputs = signature
            .inputs
            .iter()
            .map(|spec| Fact {
                shape: Some(spec.shape.iter().map(|d| if let Dim::Fixed(n) = d { *n } else { 1 }).collect()),
                value: None,
                dtype: spec.ty.onnx_data_type(),
                from_input: true,
            })
            .collect();
        for (_, fact) in &self.constants {
            if fact.bytes().is_some_and(|bytes| bytes > limit) {
                return Err(too_large_fold("an initializer", fact, limit));
            }
        }
        self.walk(inputs, |node, fact| {
            if fact.from_input {
                return match fact.bytes() {
                    Some(bytes) if bytes > max_tensor => Err(NnError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "{} makes a tensor of {} (dimensions {:?}) even for the smallest inputs, more than \
                             any function may hold ({}, max_memory_mb)",
                            describe(node),
                            human(bytes),
                            fact.shape.as_deref().unwrap_or_default(),
                            human(max_tensor)
                        ),
                    )),
                    _ => Ok(()),
                };
            }
            match fact.bytes() {
                Some(bytes) if bytes > limit => Err(too_large_fold(&describe(node), fact, limit)),
                None if is_generator(&node.op) => Err(NnError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "{} makes a tensor from constants whose size muon cannot work out before loading; \
                         compute its shape from a model input, or from constants with plain arithmetic",
                        describe(node)
                    ),
                )),
                _ => Ok(()),
            }
        })
    }

    /// Refuses a compute on `inputs` that would make a tensor larger than
    /// `limit` bytes (the calling function's memory limit). Otherwise says
    /// what the compute makes ([`RunSize`]).
    pub fn check_run(&self, inputs: &[HostTensor], limit: u64) -> Result<RunSize, NnError> {
        if let Some(made_bytes) = self.passed(inputs, limit) {
            return Ok(RunSize { fixed: true, made_bytes: Some(made_bytes) });
        }
        let made = self.size_run(inputs.iter().map(input_fact).collect(), limit)?;
        // Sized from the dimensions alone, the same dimensions pass for any
        // values: a training loop's every step need not walk the graph.
        let fixed = match made {
            Some(_) => match self.size_run(inputs.iter().map(shape_fact).collect(), limit) {
                Ok(Some(by_shape)) => {
                    self.remember_passed(inputs, limit, by_shape);
                    true
                }
                _ => false,
            },
            None => false,
        };
        Ok(RunSize { fixed, made_bytes: made })
    }

    /// Sizes every tensor of a compute from its inputs' `facts`, refusing
    /// one larger than `limit`; the bytes of all of them, when every size
    /// was known and the work is fixed by them.
    fn size_run(&self, facts: Vec<Fact>, limit: u64) -> Result<Option<u64>, NnError> {
        let mut made = (!self.opaque).then_some(0u64);
        self.walk(facts, |node, fact| match fact.bytes() {
            Some(bytes) if fact.from_input && bytes > u128::from(limit) => Err(NnError::new(
                ErrorCode::TooLarge,
                format!(
                    "{} would make a tensor of {} (dimensions {:?}) from these inputs, more than the function's \
                     memory limit of {}; give smaller inputs or deploy the function with a larger memory_mb",
                    describe(node),
                    human(bytes),
                    fact.shape.as_deref().unwrap_or_default(),
                    human(u128::from(limit))
                ),
            )),
            Some(bytes) => {
                made = made.map(|made| made.saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX)));
                Ok(())
            }
            None => {
                made = None;
                Ok(())
            }
        })?;
        Ok(made)
    }

    /// The bytes a compute on inputs of these shapes was found to make, if
    /// it passed under `limit` sized by the shapes alone.
    fn passed(&self, inputs: &[HostTensor], limit: u64) -> Option<u64> {
        let same = |shapes: &InputShapes| {
            shapes.len() == inputs.len()
                && shapes.iter().zip(inputs).all(|((ty, dims), input)| *ty == input.ty && *dims == input.dimensions)
        };
        let passed = self.passed.lock().ok()?;
        passed.iter().find(|pass| pass.limit == limit && same(&pass.shapes)).map(|pass| pass.made_bytes)
    }

    fn remember_passed(&self, inputs: &[HostTensor], limit: u64, made_bytes: u64) {
        if let Ok(mut passed) = self.passed.lock() {
            if passed.len() >= PASSED_KEPT {
                passed.remove(0);
            }
            let shapes = inputs.iter().map(|input| (input.ty, input.dimensions.clone())).collect();
            passed.push(Passed { shapes, limit, made_bytes });
        }
    }

    /// Infers every node's outputs in order, calling `check` on each.
    fn walk(
        &self,
        inputs: Vec<Fact>,
        mut check: impl FnMut(&Node, &Fact) -> Result<(), NnError>,
    ) -> Result<(), NnError> {
        let mut facts: Vec<Option<Fact>> = vec![None; self.slots];
        for (at, fact) in &self.constants {
            facts[*at] = Some(fact.clone());
        }
        for (at, fact) in self.inputs.iter().zip(inputs) {
            if let Some(at) = at {
                facts[*at] = Some(fact);
            }
        }
        let unknown = Fact { from_input: true, ..Fact::default() };
        for node in &self.nodes {
            let given: Vec<&Fact> =
                node.inputs.iter().map(|at| at.and_then(|at| facts[at].as_ref()).unwrap_or(&unknown)).collect();
            let present: Vec<Option<&Fact>> =
                node.inputs.iter().zip(&given).map(|(at, fact)| at.map(|_| *fact)).collect();
            let from_input = given.iter().any(|fact| fact.from_input);
            let mut outputs = infer(node, &present);
            for (fact, at) in outputs.iter_mut().zip(&node.outputs) {
                fact.from_input = from_input;
                check(node, fact)?;
                if let Some(at) = at {
                    facts[*at] = Some(std::mem::take(fact));
                }
            }
        }
        Ok(())
    }
}

fn too_large_fold(what: &str, fact: &Fact, limit: u128) -> NnError {
    NnError::new(
        ErrorCode::TooLarge,
        format!(
            "{what} makes a constant tensor of {} (dimensions {:?}) when the model is loaded; this host folds \
             constants of at most {} (nn max_fold_bytes); compute the tensor from a model input instead",
            human(fact.bytes().unwrap_or(u128::MAX)),
            fact.shape.as_deref().unwrap_or_default(),
            human(limit)
        ),
    )
}

fn describe(node: &Node) -> String {
    if node.name.is_empty() { format!("a {} node", node.op) } else { format!("node `{}` ({})", node.name, node.op) }
}

fn human(bytes: u128) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Operators whose output can be far larger than their inputs, sized by
/// values rather than by input shapes.
fn is_generator(op: &str) -> bool {
    matches!(
        op,
        "ConstantOfShape"
            | "Expand"
            | "Tile"
            | "Range"
            | "Resize"
            | "Upsample"
            | "Pad"
            | "OneHot"
            | "RandomNormal"
            | "RandomUniform"
    )
}

fn count_nodes(graph: &pb::GraphProto) -> usize {
    graph
        .node
        .iter()
        .map(|node| {
            1 + node
                .attribute
                .iter()
                .map(|a| a.g.iter().chain(&a.graphs).map(count_nodes).sum::<usize>())
                .sum::<usize>()
        })
        .sum()
}

/// Orders nodes so each comes after the producers of its inputs, as ONNX
/// requires and backends assume (they sort themselves; so must muon, or an
/// unordered graph would hide a constant subgraph from the checks).
fn topological(nodes: Vec<Node>, slots: usize, constants: &[(usize, Fact)]) -> Result<Vec<Node>, NnError> {
    let mut producer: Vec<Option<usize>> = vec![None; slots];
    for (index, node) in nodes.iter().enumerate() {
        for at in node.outputs.iter().flatten() {
            producer[*at] = Some(index);
        }
    }
    for (at, _) in constants {
        producer[*at] = None;
    }
    let mut waiting: Vec<usize> = vec![0; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (index, node) in nodes.iter().enumerate() {
        for at in node.inputs.iter().flatten() {
            if let Some(from) = producer[*at].filter(|&from| from != index) {
                waiting[index] += 1;
                consumers[from].push(index);
            }
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(index) = ready.pop() {
        order.push(index);
        for &next in &consumers[index] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(next);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(NnError::new(ErrorCode::InvalidEncoding, "the ONNX graph has a cycle"));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use anyhow::Context as _;

    /// The digits MLP's train-step graph, with a batch of `rows`.
    fn train_step(rows: u32) -> anyhow::Result<(ModelBounds, Vec<HostTensor>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/training/digits-mlp-train.onnx");
        let bytes = std::fs::read(path).context("the example train-step graph")?;
        let signature = super::super::signature::inspect_onnx(&bytes)?;
        let limits = LoadLimits { max_nodes: 10_000, max_fold_bytes: 1 << 20, max_tensor_bytes: 1 << 30 };
        let bounds = ModelBounds::analyse(&bytes, &signature, limits)?;
        let inputs = signature
            .inputs
            .iter()
            .map(|spec| {
                let dimensions: Vec<u32> =
                    spec.shape.iter().map(|dim| if let Dim::Fixed(n) = dim { *n as u32 } else { rows }).collect();
                let bytes = dimensions.iter().product::<u32>() as usize * spec.ty.size();
                HostTensor { dimensions, ty: spec.ty, data: vec![0; bytes] }
            })
            .collect();
        Ok((bounds, inputs))
    }

    #[test]
    fn a_run_sized_by_its_dimensions_says_what_it_makes_and_is_remembered() -> anyhow::Result<()> {
        let (bounds, inputs) = train_step(32)?;
        let first = bounds.check_run(&inputs, 64 << 20)?;
        assert!(first.fixed, "an MLP's work is fixed by its inputs' dimensions");
        let made = first.made_bytes.context("every tensor is sized")?;
        // At least the updated parameters and velocities (2 x 4810 fp32).
        assert!((2 * 4810 * 4..1 << 20).contains(&made), "{made} bytes");
        assert_eq!(bounds.check_run(&inputs, 64 << 20)?, first, "the remembered pass says the same");
        let (_, wider) = train_step(256)?;
        let wider = bounds.check_run(&wider, 64 << 20)?.made_bytes;
        assert!(wider.is_some_and(|wider| wider > made), "a wider batch makes more: {wider:?} against {made}");
        assert!(bounds.check_run(&inputs, 1024).is_err(), "a 1 KiB limit refuses a 32-row batch's activations");
        Ok(())
    }

    #[test]
    fn human_sizes_read_well() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(1 << 30), "1.0 GiB");
    }
}
