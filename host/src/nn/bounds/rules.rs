//! Shape rules: what each ONNX operator's outputs are, from what is known
//! of its inputs, with the integer arithmetic that computes shapes
//! evaluated where the values are known.

use tract_onnx::pb::tensor_proto::DataType;

use super::proto::dims_of;
use super::{Fact, Node, SMALL};

/// The output facts of one node, from what is known of its inputs; an
/// operator without a rule gives outputs of unknown size.
pub(super) fn infer(node: &Node, inputs: &[Option<&Fact>]) -> Vec<Fact> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let first = input(0);
    let dtype0 = first.map_or(0, |f| f.dtype);
    let same =
        |fact: Option<&Fact>| Fact { shape: fact.and_then(|f| f.shape.clone()), dtype: dtype0, ..Fact::default() };
    let one = |fact: Fact| {
        let mut outputs = vec![fact];
        outputs.resize(node.outputs.len().max(1), Fact::default());
        outputs
    };
    let bool_type = DataType::Bool as i32;
    let int64 = DataType::Int64 as i32;
    match node.op.as_str() {
        "Constant" => one(node.tensor.clone().unwrap_or_default()),
        "Identity" => one(first.cloned().unwrap_or_default()),
        "Cast" | "CastLike" => {
            let to = node.int("to").map(|t| t as i32).or_else(|| input(1).map(|f| f.dtype)).unwrap_or(0);
            one(Fact { dtype: to, ..first.cloned().unwrap_or_default() })
        }
        "Neg" => one(Fact {
            value: first.and_then(|f| f.value.as_ref()).map(|v| v.iter().map(|x| -x).collect()),
            ..same(first)
        }),
        "Abs"
        | "Relu"
        | "Tanh"
        | "Sigmoid"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Reciprocal"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Erf"
        | "Sign"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "LeakyRelu"
        | "Elu"
        | "Selu"
        | "Celu"
        | "HardSigmoid"
        | "HardSwish"
        | "Softplus"
        | "Softsign"
        | "Sin"
        | "Cos"
        | "Tan"
        | "Asin"
        | "Acos"
        | "Atan"
        | "Sinh"
        | "Cosh"
        | "Clip"
        | "Dropout"
        | "BatchNormalization"
        | "InstanceNormalization"
        | "LayerNormalization"
        | "LpNormalization"
        | "LRN"
        | "CumSum"
        | "Gelu"
        | "Mish"
        | "Shrink"
        | "ThresholdedRelu"
        | "Trilu"
        | "DequantizeLinear"
        | "QuantizeLinear"
        | "RandomNormalLike"
        | "RandomUniformLike"
        | "EyeLike"
        | "Bernoulli" => {
            let mut fact = same(first);
            if node.op == "DequantizeLinear" {
                fact.dtype = DataType::Float as i32;
            }
            one(fact)
        }
        "IsNaN" | "IsInf" | "Not" => one(Fact { dtype: bool_type, ..same(first) }),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Max" | "Min" | "Sum" | "Mean" | "PRelu" | "BitShift"
        | "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Where" => {
            let shapes: Option<Vec<&Vec<u64>>> = inputs.iter().map(|f| f.and_then(|f| f.shape.as_ref())).collect();
            let shape = shapes.and_then(|s| broadcast(&s));
            let dtype = match node.op.as_str() {
                "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor" => bool_type,
                "Where" => input(1).map_or(0, |f| f.dtype),
                _ => dtype0,
            };
            let value = arithmetic(&node.op, first, input(1), dtype0);
            one(Fact { shape, value, dtype, from_input: false })
        }
        "Shape" => {
            let dims = first.and_then(|f| f.shape.clone());
            let value = dims.map(|dims| {
                let rank = dims.len() as i64;
                let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
                let (start, end) = (clamp(node.int("start").unwrap_or(0)), clamp(node.int("end").unwrap_or(rank)));
                dims.get(start..end.max(start)).unwrap_or_default().iter().map(|&d| d as f64).collect::<Vec<_>>()
            });
            match value {
                Some(value) => one(Fact::with_value(value, int64)),
                None => one(Fact { dtype: int64, ..Fact::default() }),
            }
        }
        "Size" => {
            let value = first.and_then(Fact::elements).map(|n| vec![n as f64]);
            one(Fact { shape: Some(vec![]), value, dtype: int64, from_input: false })
        }
        "Concat" => one(concat(node, inputs)),
        "Unsqueeze" | "Squeeze" => one(squeeze(node, first, input(1))),
        "Reshape" => one(reshape(first, input(1), node.int("allowzero").unwrap_or(0) != 0)),
        "Flatten" => {
            let shape = first.and_then(|f| f.shape.as_ref()).map(|dims| {
                let axis = normalize(node.int("axis").unwrap_or(1), dims.len() + 1).min(dims.len());
                vec![dims[..axis].iter().product::<u64>(), dims[axis..].iter().product::<u64>()]
            });
            one(Fact { shape, dtype: dtype0, ..Fact::default() })
        }
        "Transpose" => {
            let shape = first.and_then(|f| f.shape.as_ref()).and_then(|dims| match node.ints.get("perm") {
                Some(perm) => {
                    perm.iter().map(|&p| usize::try_from(p).ok().and_then(|p| dims.get(p).copied())).collect()
                }
                None => Some(dims.iter().rev().copied().collect()),
            });
            one(Fact { shape, dtype: dtype0, ..Fact::default() })
        }
        "Gather" => one(gather(node, first, input(1))),
        "Slice" => one(slice(node, inputs)),
        "ConstantOfShape" => {
            let dtype = node.tensor.as_ref().map_or(DataType::Float as i32, |t| t.dtype);
            let fill =
                node.tensor.as_ref().and_then(|t| t.value.as_ref()).and_then(|v| v.first().copied()).unwrap_or(0.0);
            let mut fact = Fact { shape: first.and_then(Fact::dims), dtype, ..Fact::default() };
            if fact.elements().is_some_and(|n| n <= u128::from(SMALL)) {
                fact.value = fact.elements().map(|n| vec![fill; n as usize]);
            }
            one(fact)
        }
        "Expand" => {
            let shape = match (first.and_then(|f| f.shape.as_ref()), input(1).and_then(Fact::dims)) {
                (Some(dims), Some(target)) => broadcast(&[dims, &target]),
                // Without the input's shape, the target is still a lower bound.
                (None, Some(target)) => Some(target),
                _ => None,
            };
            one(Fact { shape, dtype: dtype0, ..Fact::default() })
        }
        "Tile" => {
            let shape = match (first.and_then(|f| f.shape.as_ref()), input(1).and_then(Fact::dims)) {
                (Some(dims), Some(repeats)) if dims.len() == repeats.len() => {
                    Some(dims.iter().zip(&repeats).map(|(d, r)| d.saturating_mul(*r)).collect())
                }
                (None, Some(repeats)) => Some(repeats),
                _ => None,
            };
            one(Fact { shape, dtype: dtype0, ..Fact::default() })
        }
        "Range" => one(range(first, input(1), input(2))),
        "Resize" | "Upsample" => one(resize(node, inputs)),
        "Pad" => one(pad(node, first, input(1))),
        "OneHot" => {
            let depth =
                input(1).and_then(|f| f.value.as_ref()).and_then(|v| v.first().copied()).map(|d| d.max(0.0) as u64);
            let shape = match (first.and_then(|f| f.shape.as_ref()), depth) {
                (Some(dims), Some(depth)) => {
                    let axis = normalize(node.int("axis").unwrap_or(-1), dims.len() + 1);
                    let mut dims = dims.clone();
                    dims.insert(axis.min(dims.len()), depth);
                    Some(dims)
                }
                _ => None,
            };
            one(Fact { shape, dtype: input(2).map_or(0, |f| f.dtype), ..Fact::default() })
        }
        "RandomNormal" | "RandomUniform" => {
            let shape = node.ints.get("shape").map(Vec::as_slice).map(dims_of);
            let dtype = node.int("dtype").map_or(DataType::Float as i32, |d| d as i32);
            one(Fact { shape, dtype, ..Fact::default() })
        }
        "MatMul" | "MatMulInteger" => one(Fact { shape: matmul(first, input(1)), dtype: dtype0, ..Fact::default() }),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            let axes = match (node.ints.get("axes"), input(1)) {
                (Some(axes), _) => Some(axes.clone()),
                (None, Some(given)) => given.ints(),
                (None, None) => Some(Vec::new()),
            };
            one(Fact { shape: axes.and_then(|axes| reduced(node, first, &axes)), dtype: dtype0, ..Fact::default() })
        }
        "ArgMax" | "ArgMin" => {
            let axis = vec![node.int("axis").unwrap_or(0)];
            one(Fact { shape: reduced(node, first, &axis), dtype: int64, ..Fact::default() })
        }
        "Gemm" => {
            let shape = match (first.and_then(|f| f.shape.as_ref()), input(1).and_then(|f| f.shape.as_ref())) {
                (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => {
                    let m = if node.int("transA").unwrap_or(0) != 0 { a[1] } else { a[0] };
                    let n = if node.int("transB").unwrap_or(0) != 0 { b[0] } else { b[1] };
                    Some(vec![m, n])
                }
                _ => None,
            };
            one(Fact { shape, dtype: dtype0, ..Fact::default() })
        }
        _ => vec![Fact::default(); node.outputs.len()],
    }
}

/// A reduction's output shape: `axes` dropped, or kept as 1 with
/// `keepdims` (the default); no axes reduce them all, or none with
/// `noop_with_empty_axes`.
fn reduced(node: &Node, data: Option<&Fact>, axes: &[i64]) -> Option<Vec<u64>> {
    let dims = data?.shape.as_ref()?;
    if axes.is_empty() && node.int("noop_with_empty_axes").unwrap_or(0) != 0 {
        return Some(dims.clone());
    }
    let axes: Vec<usize> = match axes {
        [] => (0..dims.len()).collect(),
        axes => axes.iter().map(|&axis| normalize(axis, dims.len())).collect(),
    };
    let keep = node.int("keepdims").unwrap_or(1) != 0;
    Some(
        dims.iter()
            .enumerate()
            .filter_map(|(i, &d)| match (axes.contains(&i), keep) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect(),
    )
}

fn normalize(axis: i64, rank: usize) -> usize {
    let rank = rank as i64;
    (if axis < 0 { axis + rank } else { axis }).clamp(0, rank.max(0)) as usize
}

fn broadcast(shapes: &[&Vec<u64>]) -> Option<Vec<u64>> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    (0..rank)
        .map(|axis| {
            shapes.iter().try_fold(1u64, |dim, shape| {
                let offset = rank - shape.len();
                let d = if axis < offset { 1 } else { shape[axis - offset] };
                match (dim, d) {
                    (dim, 1) => Some(dim),
                    (1, d) => Some(d),
                    (dim, d) if dim == d => Some(dim),
                    _ => None,
                }
            })
        })
        .collect()
}

fn arithmetic(op: &str, a: Option<&Fact>, b: Option<&Fact>, dtype: i32) -> Option<Vec<f64>> {
    let (a, b) = (a?.value.as_ref()?, b?.value.as_ref()?);
    let integer = !matches!(DataType::try_from(dtype), Ok(DataType::Float | DataType::Double | DataType::Float16));
    let apply = |x: f64, y: f64| match op {
        "Add" | "Sum" => Some(x + y),
        "Sub" => Some(x - y),
        "Mul" => Some(x * y),
        "Div" if y != 0.0 => Some(if integer { (x / y).trunc() } else { x / y }),
        "Max" => Some(x.max(y)),
        "Min" => Some(x.min(y)),
        _ => None,
    };
    let n = a.len().max(b.len());
    if (a.len() != n && a.len() != 1) || (b.len() != n && b.len() != 1) {
        return None;
    }
    (0..n).map(|i| apply(a[if a.len() == 1 { 0 } else { i }], b[if b.len() == 1 { 0 } else { i }])).collect()
}

fn concat(node: &Node, inputs: &[Option<&Fact>]) -> Fact {
    let facts: Option<Vec<&Fact>> = inputs.iter().copied().collect();
    let Some(facts) = facts else {
        return Fact::default();
    };
    let dtype = facts.first().map_or(0, |f| f.dtype);
    let shapes: Option<Vec<&Vec<u64>>> = facts.iter().map(|f| f.shape.as_ref()).collect();
    let shape = shapes.and_then(|shapes| {
        let first = *shapes.first()?;
        let axis = normalize(node.int("axis").unwrap_or(0), first.len());
        let mut out = first.clone();
        *out.get_mut(axis)? = shapes.iter().map(|s| s.get(axis).copied().unwrap_or(0)).sum();
        Some(out)
    });
    let value = facts.iter().map(|f| f.value.clone()).collect::<Option<Vec<_>>>().map(|v| v.concat());
    let value = value.filter(|v| shape.as_ref().is_some_and(|s| s.len() == 1 && s[0] == v.len() as u64));
    Fact { shape, value, dtype, from_input: false }
}

fn squeeze(node: &Node, data: Option<&Fact>, axes_input: Option<&Fact>) -> Fact {
    let Some(data) = data else {
        return Fact::default();
    };
    let axes = node.ints.get("axes").cloned().or_else(|| axes_input.and_then(Fact::ints));
    let shape = data.shape.as_ref().and_then(|dims| {
        if node.op == "Unsqueeze" {
            let axes = axes?;
            let rank = dims.len() + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&a| normalize(a, rank)).collect();
            axes.sort_unstable();
            let mut out = dims.clone();
            for axis in axes {
                (axis <= out.len()).then(|| out.insert(axis, 1))?;
            }
            Some(out)
        } else {
            let axes: Vec<usize> = match axes {
                Some(axes) => axes.iter().map(|&a| normalize(a, dims.len())).collect(),
                None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
            };
            Some(dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect())
        }
    });
    Fact { shape, value: data.value.clone(), dtype: data.dtype, from_input: false }
}

fn reshape(data: Option<&Fact>, target: Option<&Fact>, allow_zero: bool) -> Fact {
    let Some(data) = data else {
        return Fact::default();
    };
    let shape = target.and_then(Fact::ints).and_then(|target| {
        let input = data.shape.as_ref();
        let mut out: Vec<Option<u64>> = target
            .iter()
            .enumerate()
            .map(|(i, &d)| match d {
                0 if !allow_zero => input.and_then(|s| s.get(i).copied()),
                -1 => None,
                d => u64::try_from(d).ok(),
            })
            .collect();
        let holes = target.iter().filter(|&&d| d == -1).count();
        if holes == 1 {
            let known: u64 = out.iter().flatten().product();
            let total = data.elements()? as u64;
            let hole = out.iter().position(Option::is_none)?;
            out[hole] = Some(total.checked_div(known).unwrap_or(0));
        }
        out.into_iter().collect::<Option<Vec<u64>>>()
    });
    // A reshape never holds more elements than its input, whatever its target says.
    let shape = shape.or_else(|| data.elements().map(|n| vec![n as u64]));
    Fact { shape, value: data.value.clone(), dtype: data.dtype, from_input: false }
}

fn gather(node: &Node, data: Option<&Fact>, indices: Option<&Fact>) -> Fact {
    let (Some(data), Some(indices)) = (data, indices) else {
        return Fact::default();
    };
    let shape = match (data.shape.as_ref(), indices.shape.as_ref()) {
        (Some(d), Some(i)) if !d.is_empty() => {
            let axis = normalize(node.int("axis").unwrap_or(0), d.len()).min(d.len() - 1);
            Some([&d[..axis], i.as_slice(), &d[axis + 1..]].concat())
        }
        _ => None,
    };
    let value = match (data.value.as_ref(), indices.ints(), data.shape.as_ref()) {
        (Some(values), Some(picks), Some(d)) if d.len() == 1 => picks
            .iter()
            .map(|&p| {
                let p = if p < 0 { p + values.len() as i64 } else { p };
                usize::try_from(p).ok().and_then(|p| values.get(p).copied())
            })
            .collect(),
        _ => None,
    };
    Fact { shape, value, dtype: data.dtype, from_input: false }
}

fn slice(node: &Node, inputs: &[Option<&Fact>]) -> Fact {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let Some(data) = input(0) else {
        return Fact::default();
    };
    let param = |attr: &str, at: usize| node.ints.get(attr).cloned().or_else(|| input(at).and_then(Fact::ints));
    let (Some(dims), Some(starts), Some(ends)) = (data.shape.as_ref(), param("starts", 1), param("ends", 2)) else {
        return Fact { dtype: data.dtype, ..Fact::default() };
    };
    let axes = param("axes", 3).unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = input(4).and_then(Fact::ints).unwrap_or_else(|| vec![1; starts.len()]);
    let mut shape = dims.clone();
    let mut ranges = Vec::new();
    for (((&start, &end), &axis), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
        let axis = normalize(axis, dims.len());
        let Some(&dim) = dims.get(axis) else {
            return Fact { dtype: data.dtype, ..Fact::default() };
        };
        if step == 0 {
            return Fact { dtype: data.dtype, ..Fact::default() };
        }
        let dim = dim as i128;
        let fix = |i: i64, low: i128, high: i128| {
            let i = i128::from(i);
            (if i < 0 { i + dim } else { i }).clamp(low, high)
        };
        let (start, end) = if step > 0 {
            (fix(start, 0, dim), fix(end, 0, dim))
        } else {
            (fix(start, 0, dim - 1), fix(end, -1, dim - 1))
        };
        let step = i128::from(step);
        let count = ((end - start) + step - step.signum()) / step;
        shape[axis] = count.max(0) as u64;
        ranges.push((start, step, count.max(0)));
    }
    let value = match (&data.value, ranges.as_slice()) {
        (Some(values), [(start, step, count)]) if dims.len() == 1 => {
            (0..*count).map(|k| usize::try_from(start + k * step).ok().and_then(|i| values.get(i).copied())).collect()
        }
        _ => None,
    };
    Fact { shape: Some(shape), value, dtype: data.dtype, from_input: false }
}

fn range(start: Option<&Fact>, limit: Option<&Fact>, delta: Option<&Fact>) -> Fact {
    let scalar = |f: Option<&Fact>| f.and_then(|f| f.value.as_ref()).and_then(|v| v.first().copied());
    let dtype = start.map_or(0, |f| f.dtype);
    let (Some(a), Some(b), Some(d)) = (scalar(start), scalar(limit), scalar(delta)) else {
        return Fact { dtype, ..Fact::default() };
    };
    let count = if d == 0.0 { 0.0 } else { ((b - a) / d).ceil().max(0.0) };
    let count = if count.is_finite() { count.min(u64::MAX as f64) as u64 } else { u64::MAX };
    let value = (count <= SMALL).then(|| (0..count).map(|k| a + k as f64 * d).collect());
    Fact { shape: Some(vec![count]), value, dtype, from_input: false }
}

fn resize(node: &Node, inputs: &[Option<&Fact>]) -> Fact {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let data = input(0);
    let dtype = data.map_or(0, |f| f.dtype);
    let dims = data.and_then(|f| f.shape.as_ref());
    let (scales, sizes) = if node.op == "Upsample" { (input(1), None) } else { (input(2), input(3)) };
    let shape = sizes.and_then(Fact::dims).filter(|s| !s.is_empty()).or_else(|| {
        let (dims, scales) = (dims?, scales?.value.as_ref()?);
        (dims.len() == scales.len() && !scales.is_empty()).then(|| {
            dims.iter().zip(scales).map(|(&d, &s)| (d as f64 * s).max(0.0).min(u64::MAX as f64) as u64).collect()
        })
    });
    Fact { shape, dtype, ..Fact::default() }
}

fn pad(node: &Node, data: Option<&Fact>, pads_input: Option<&Fact>) -> Fact {
    let Some(data) = data else {
        return Fact::default();
    };
    let pads = node.ints.get("pads").cloned().or_else(|| pads_input.and_then(Fact::ints));
    let shape = match (data.shape.as_ref(), pads) {
        (Some(dims), Some(pads)) if pads.len() == 2 * dims.len() => dims
            .iter()
            .enumerate()
            .map(|(i, &d)| u64::try_from(i128::from(d) + i128::from(pads[i]) + i128::from(pads[i + dims.len()])).ok())
            .collect(),
        _ => None,
    };
    Fact { shape, dtype: data.dtype, ..Fact::default() }
}

fn matmul(a: Option<&Fact>, b: Option<&Fact>) -> Option<Vec<u64>> {
    let (a, b) = (a?.shape.as_ref()?, b?.shape.as_ref()?);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2 = if a.len() == 1 { vec![1, a[0]] } else { a.clone() };
    let b2 = if b.len() == 1 { vec![b[0], 1] } else { b.clone() };
    let batch = broadcast(&[&a2[..a2.len() - 2].to_vec(), &b2[..b2.len() - 2].to_vec()])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[&vec![4, 1], &vec![1, 5]]), Some(vec![4, 5]));
        assert_eq!(broadcast(&[&vec![3], &vec![2, 1]]), Some(vec![2, 3]));
        assert_eq!(broadcast(&[&vec![3], &vec![2]]), None);
    }

    #[test]
    fn reductions_drop_or_keep_their_axes() {
        let node = |op: &str, ints: &[(&str, i64)]| Node {
            name: String::new(),
            op: op.into(),
            inputs: vec![],
            outputs: vec![None],
            ints: ints.iter().map(|(name, value)| ((*name).to_owned(), vec![*value])).collect(),
            tensor: None,
        };
        let data = Fact::with_shape(vec![32, 10], DataType::Float as i32);
        let axes = Fact::with_value(vec![1.0], DataType::Int64 as i32);
        let shape = |node: &Node, inputs: &[Option<&Fact>]| infer(node, inputs)[0].shape.clone();
        assert_eq!(shape(&node("ReduceSum", &[]), &[Some(&data), Some(&axes)]), Some(vec![32, 1]));
        assert_eq!(shape(&node("ReduceMean", &[("keepdims", 0)]), &[Some(&data)]), Some(vec![]));
        assert_eq!(shape(&node("ReduceMax", &[("axes", -2), ("keepdims", 0)]), &[Some(&data)]), Some(vec![10]));
        assert_eq!(shape(&node("ReduceSum", &[("noop_with_empty_axes", 1)]), &[Some(&data)]), Some(vec![32, 10]));
        let argmax = infer(&node("ArgMax", &[("axis", 1), ("keepdims", 0)]), &[Some(&data)]);
        assert_eq!((argmax[0].shape.clone(), argmax[0].dtype), (Some(vec![32]), DataType::Int64 as i32));
        let unknown_axes = Fact::default();
        assert_eq!(shape(&node("ReduceSum", &[]), &[Some(&data), Some(&unknown_axes)]), None);
    }

    #[test]
    fn slices_count_like_onnx() {
        let data = Fact::with_value((0..10).map(f64::from).collect(), DataType::Int64 as i32);
        let node = Node {
            name: String::new(),
            op: "Slice".into(),
            inputs: vec![],
            outputs: vec![],
            ints: HashMap::new(),
            tensor: None,
        };
        let ints = |v: Vec<f64>| Fact::with_value(v, DataType::Int64 as i32);
        let (starts, ends, axes, steps) = (ints(vec![-1.0]), ints(vec![-20.0]), ints(vec![0.0]), ints(vec![-3.0]));
        let out = slice(&node, &[Some(&data), Some(&starts), Some(&ends), Some(&axes), Some(&steps)]);
        assert_eq!(out.shape, Some(vec![4]));
        assert_eq!(out.value, Some(vec![9.0, 6.0, 3.0, 0.0]));
    }
}
