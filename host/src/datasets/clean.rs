//! Cleaning the good rows: missing values, repeats, the seeded split,
//! imputation and normalization from the train split, the categories'
//! order, and every statistic of the report.
//!
//! The split is reproducible forever: the shuffle is a Fisher-Yates over
//! ChaCha8 seeded with the seed's 8 little-endian bytes (zero-padded), with
//! Lemire's unbiased bounded integers, so no library update can change it.
//! Split sizes are the largest-remainder rounding of `rows * fraction`, so
//! every split is within one row of its exact share (per class, with
//! `stratify=true`, classes taken in the order of their names, or of a
//! numeric label's bits).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

use crate::api::datasets::{
    BadRows, ColumnKind, ColumnReport, ColumnRole, DatasetFormat, DatasetOptions, DatasetReport, LabelReport, Missing,
    Normalization, Normalize, NumericStats, RowCounts, Split, SplitFractions, SplitSizes,
};

use super::error::DatasetError;
use super::stats::{self, Moments};
use super::table::{MISSING_CODE, Table, Values, number_text};
use super::{DISTINCT_BOUND, MAX_CATEGORIES};

/// A numeric label's distribution is reported up to this many distinct values.
const LABEL_VALUES_LISTED: usize = 100;

/// What fills a column's missing values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fill {
    None,
    Number(f64),
    /// A class index (after [`Cleaned::categories`]' remap).
    Code(u32),
}

/// A categorical column's categories, in stored order, and the remap from
/// the table's codes (first-seen order) to that order.
#[derive(Debug, Clone)]
pub(crate) struct Categories {
    pub names: Vec<String>,
    pub remap: Vec<u32>,
}

/// The cleaned dataset: the table, which rows go to which split, and how
/// values are filled, recoded and scaled on the way out.
#[derive(Debug)]
pub(crate) struct Cleaned {
    pub table: Table,
    /// Table row indices of each split (train, validation, test), in file order.
    pub splits: [Vec<u32>; 3],
    pub fills: Vec<Fill>,
    pub categories: Vec<Option<Categories>>,
    pub normalization: Vec<Option<Normalization>>,
    counts: RowCounts,
    moments: Vec<Option<Moments>>,
    distinct: Vec<(u64, bool)>,
    label: Option<LabelReport>,
}

impl Cleaned {
    /// The value of numeric column `column` at table row `row`, filled (not scaled).
    pub(crate) fn number(&self, column: usize, row: u32) -> f64 {
        match &self.table.columns[column].values {
            Values::Numeric(values) => {
                let x = values[row as usize];
                match (x.is_nan(), self.fills[column]) {
                    (true, Fill::Number(fill)) => fill,
                    _ => x,
                }
            }
            Values::Categorical { .. } => f64::NAN,
        }
    }

    /// The class index of categorical column `column` at table row `row`, filled and remapped.
    pub(crate) fn code(&self, column: usize, row: u32) -> u32 {
        match (&self.table.columns[column].values, &self.categories[column]) {
            (Values::Categorical { codes, .. }, Some(categories)) => match codes[row as usize] {
                MISSING_CODE => match self.fills[column] {
                    Fill::Code(code) => code,
                    _ => MISSING_CODE,
                },
                code => categories.remap.get(code as usize).copied().unwrap_or(MISSING_CODE),
            },
            _ => MISSING_CODE,
        }
    }

    fn kept(&self) -> impl Iterator<Item = u32> + '_ {
        self.splits.iter().flatten().copied()
    }

    /// The report of the build, but for what storing adds (`stored_columns`, the catalog's fields).
    pub(crate) fn report(&self, mut report: DatasetReport) -> DatasetReport {
        report.rows = self.counts;
        let [train, validation, test] = &self.splits;
        report.splits =
            SplitSizes { train: train.len() as u64, validation: validation.len() as u64, test: test.len() as u64 };
        for (i, column) in report.columns.iter_mut().enumerate() {
            column.stats = self.moments[i].map(|m| NumericStats {
                count: m.count,
                min: m.min,
                max: m.max,
                mean: m.mean,
                std: m.std,
            });
            (column.distinct, column.distinct_capped) = self.distinct[i];
            column.categories = self.categories[i].as_ref().map(|c| c.names.clone());
            column.normalization = self.normalization[i];
            match self.fills[i] {
                Fill::Number(x) => column.imputed = Some(x),
                Fill::Code(code) => {
                    column.imputed_category =
                        self.categories[i].as_ref().and_then(|c| c.names.get(code as usize).cloned());
                }
                Fill::None => {}
            }
        }
        report.label = self.label.clone();
        report
    }
}

/// The report before cleaning: what reading found (also what a refused upload answers).
pub(crate) fn base_report(
    table: &Table,
    format: DatasetFormat,
    bytes_read: u64,
    read: u64,
    bad_rows: BadRows,
    options: &DatasetOptions,
) -> DatasetReport {
    let columns = table
        .columns
        .iter()
        .map(|column| ColumnReport {
            name: column.spec.name.clone(),
            role: column.spec.role,
            kind: column.spec.kind,
            source_type: column.spec.source_type.clone(),
            missing: column.missing,
            imputed: None,
            imputed_category: None,
            stats: None,
            distinct: 0,
            distinct_capped: false,
            categories: None,
            normalization: None,
        })
        .collect();
    DatasetReport {
        name: String::new(),
        version: 0,
        digest: String::new(),
        size: 0,
        created_at_ms: 0,
        format,
        bytes_read,
        rows: RowCounts { read, dropped_bad: bad_rows.count, ..RowCounts::default() },
        splits: SplitSizes::default(),
        columns,
        label: None,
        bad_rows,
        stored_columns: Vec::new(),
        preprocess: None,
        options: options.clone(),
    }
}

/// Cleans the good rows as `options` say.
pub(crate) fn clean(table: Table, options: &DatasetOptions, read: u64, bad: u64) -> Result<Cleaned, DatasetError> {
    let features: Vec<usize> =
        (0..table.columns.len()).filter(|&c| table.columns[c].spec.role == ColumnRole::Feature).collect();
    let mut kept: Vec<u32> = (0..table.rows as u32).collect();
    let mut dropped_missing = 0;
    if table.missing_rows > 0 {
        match options.missing {
            Missing::Error => {
                return Err(DatasetError::MissingValues {
                    count: table.missing_rows,
                    first: table.first_missing.join(", "),
                });
            }
            Missing::Drop => {
                kept.retain(|&row| !features.iter().any(|&c| is_missing(&table, c, row)));
                dropped_missing = table.missing_rows;
            }
            Missing::Mean | Missing::Median => {}
        }
    }
    let deduplicated = if options.dedupe { dedupe(&table, &mut kept) } else { 0 };
    if kept.is_empty() {
        return Err(DatasetError::Empty(format!(
            "{read} rows read, {bad} bad, {dropped_missing} with missing values, {deduplicated} repeated"
        )));
    }
    let label = table.columns.iter().position(|c| c.spec.role == ColumnRole::Label);
    let splits = match (options.stratify, label) {
        (true, Some(label)) => stratified_split(&table, label, &kept, options)?,
        _ => split(kept, options.split, options.seed),
    };
    let counts = RowCounts {
        read,
        kept: splits.iter().map(|s| s.len() as u64).sum(),
        dropped_bad: bad,
        dropped_missing,
        deduplicated,
    };
    let columns = table.columns.len();
    let mut cleaned = Cleaned {
        table,
        splits,
        fills: vec![Fill::None; columns],
        categories: vec![None; columns],
        normalization: vec![None; columns],
        counts,
        moments: vec![None; columns],
        distinct: vec![(0, false); columns],
        label: None,
    };
    cleaned.categories = (0..columns).map(|c| categories(&cleaned, c)).collect();
    cleaned.fills = (0..columns).into_par_iter().map(|c| fill(&cleaned, c, options.missing)).collect();
    let described: Vec<_> = (0..columns).into_par_iter().map(|c| describe(&cleaned, c, options.normalize)).collect();
    for (c, (moments, distinct, normalization)) in described.into_iter().enumerate() {
        cleaned.moments[c] = moments;
        cleaned.distinct[c] = distinct;
        cleaned.normalization[c] = normalization;
    }
    cleaned.label = label.map(|c| label_report(&cleaned, c));
    Ok(cleaned)
}

fn is_missing(table: &Table, column: usize, row: u32) -> bool {
    match &table.columns[column].values {
        Values::Numeric(values) => values[row as usize].is_nan(),
        Values::Categorical { codes, .. } => codes[row as usize] == MISSING_CODE,
    }
}

/// Drops rows equal in every selected column (and tensor) to an earlier kept row; answers how many.
fn dedupe(table: &Table, kept: &mut Vec<u32>) -> u64 {
    let hash = |row: u32| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for column in &table.columns {
            match &column.values {
                Values::Numeric(values) => (values[row as usize] + 0.0).to_bits().hash(&mut hasher),
                Values::Categorical { codes, .. } => codes[row as usize].hash(&mut hasher),
            }
        }
        for tensor in &table.tensors {
            tensor_bytes(tensor, row).hash(&mut hasher);
        }
        hasher.finish()
    };
    let equal = |a: u32, b: u32| {
        table.columns.iter().all(|column| match &column.values {
            Values::Numeric(v) => (v[a as usize] + 0.0).to_bits() == (v[b as usize] + 0.0).to_bits(),
            Values::Categorical { codes, .. } => codes[a as usize] == codes[b as usize],
        }) && table.tensors.iter().all(|t| tensor_bytes(t, a) == tensor_bytes(t, b))
    };
    let mut seen: HashMap<u64, Vec<u32>> = HashMap::new();
    let before = kept.len();
    kept.retain(|&row| {
        let bucket = seen.entry(hash(row)).or_default();
        if bucket.iter().any(|&other| equal(row, other)) {
            false
        } else {
            bucket.push(row);
            true
        }
    });
    (before - kept.len()) as u64
}

/// The bytes of one row's tensor.
pub(crate) fn tensor_bytes(tensor: &super::table::TensorColumn, row: u32) -> &[u8] {
    let size =
        tensor.dimensions.iter().map(|d| *d as usize).product::<usize>() * super::preprocess::element_size(tensor.ty);
    let start = row as usize * size;
    tensor.data.get(start..start + size).unwrap_or_default()
}

/// Split sizes within one row of `rows * fraction` each, summing to `rows`.
pub(crate) fn sizes(rows: usize, fractions: SplitFractions) -> [usize; 3] {
    let exact = [fractions.train, fractions.validation, fractions.test].map(|f| rows as f64 * f);
    // The epsilon keeps 10 * 0.7 = 6.999999999 from rounding down.
    let mut sizes = exact.map(|x| (x + 1e-9).floor() as usize);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| (exact[b] - sizes[b] as f64).total_cmp(&(exact[a] - sizes[a] as f64)));
    let mut left = rows.saturating_sub(sizes.iter().sum());
    for &part in order.iter().cycle().take(3 * 3) {
        if left == 0 {
            break;
        }
        if exact[part] > 0.0 {
            sizes[part] += 1;
            left -= 1;
        }
    }
    sizes
}

/// A uniform integer below `bound` (Lemire's multiply-and-reject).
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let wide = u128::from(rng.next_u64()) * u128::from(bound);
        if (wide as u64) >= threshold {
            return (wide >> 64) as u64;
        }
    }
}

/// Fisher-Yates.
pub(crate) fn shuffle<T>(rows: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..rows.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        rows.swap(i, j);
    }
}

/// The generator of a seed.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    ChaCha8Rng::from_seed(bytes)
}

/// Shuffles and cuts `rows` into the three splits, each back in file order.
fn split(mut rows: Vec<u32>, fractions: SplitFractions, seed: u64) -> [Vec<u32>; 3] {
    shuffle(&mut rows, &mut rng(seed));
    let [train, validation, _] = sizes(rows.len(), fractions);
    let mut test = rows.split_off(train + validation);
    let mut validation = rows.split_off(train);
    let mut train = rows;
    for split in [&mut train, &mut validation, &mut test] {
        split.sort_unstable();
    }
    [train, validation, test]
}

/// The split done per class of the label, so each split keeps the class proportions.
fn stratified_split(
    table: &Table,
    label: usize,
    kept: &[u32],
    options: &DatasetOptions,
) -> Result<[Vec<u32>; 3], DatasetError> {
    let mut classes: BTreeMap<ClassKey, Vec<u32>> = BTreeMap::new();
    let column = &table.columns[label];
    for &row in kept {
        let key = match &column.values {
            Values::Numeric(values) => ClassKey::Number((values[row as usize] + 0.0).to_bits()),
            Values::Categorical { codes, names, .. } => {
                ClassKey::Name(names.get(codes[row as usize] as usize).cloned().unwrap_or_default())
            }
        };
        classes.entry(key).or_default().push(row);
        if classes.len() > MAX_CATEGORIES {
            return Err(DatasetError::TooManyClasses { column: column.spec.name.clone(), bound: MAX_CATEGORIES });
        }
    }
    let mut rng = rng(options.seed);
    let mut splits: [Vec<u32>; 3] = Default::default();
    for (_, mut rows) in classes {
        shuffle(&mut rows, &mut rng);
        let [train, validation, _] = sizes(rows.len(), options.split);
        splits[2].extend_from_slice(&rows[train + validation..]);
        splits[1].extend_from_slice(&rows[train..train + validation]);
        splits[0].extend_from_slice(&rows[..train]);
    }
    for split in &mut splits {
        split.sort_unstable();
    }
    Ok(splits)
}

/// A class for stratification: a category's name, or a number's bits (any fixed order will do: it only has to be
/// the same on every run, so that a seed gives the same split).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ClassKey {
    Number(u64),
    Name(String),
}

/// The categories of a categorical column found in kept rows, ordered
/// numerically when all are numbers, else lexically.
fn categories(cleaned: &Cleaned, column: usize) -> Option<Categories> {
    let Values::Categorical { codes, names, .. } = &cleaned.table.columns[column].values else {
        return None;
    };
    let mut used = vec![false; names.len()];
    for row in cleaned.kept() {
        if let Some(u) = used.get_mut(codes[row as usize] as usize) {
            *u = true;
        }
    }
    let mut order: Vec<u32> = (0..names.len() as u32).filter(|&c| used[c as usize]).collect();
    let numbers: Option<Vec<f64>> = order.iter().map(|&c| names[c as usize].trim().parse::<f64>().ok()).collect();
    match numbers {
        Some(numbers) => {
            let mut pairs: Vec<(f64, u32)> = numbers.into_iter().zip(order).collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            order = pairs.into_iter().map(|(_, c)| c).collect();
        }
        None => order.sort_by(|&a, &b| names[a as usize].cmp(&names[b as usize])),
    }
    let mut remap = vec![MISSING_CODE; names.len()];
    for (new, &old) in order.iter().enumerate() {
        remap[old as usize] = new as u32;
    }
    Some(Categories { names: order.iter().map(|&c| names[c as usize].clone()).collect(), remap })
}

/// What fills a feature's missing values: the train split's mean or median
/// (numbers), or its most frequent category (lowest class index on a tie).
/// Where the train split has no value, every kept row is looked at.
fn fill(cleaned: &Cleaned, column: usize, missing: Missing) -> Fill {
    let table_column = &cleaned.table.columns[column];
    if table_column.missing == 0 || !matches!(missing, Missing::Mean | Missing::Median) {
        return Fill::None;
    }
    let train = &cleaned.splits[0];
    let rows: Vec<u32> = if train.iter().any(|&r| !is_missing(&cleaned.table, column, r)) {
        train.clone()
    } else {
        cleaned.kept().collect()
    };
    match &table_column.values {
        Values::Numeric(values) => {
            let present = || rows.iter().map(|&r| values[r as usize]).filter(|x| !x.is_nan());
            let value = match missing {
                Missing::Median => stats::median(present().collect()),
                _ => stats::moments(present).map(|m| m.mean),
            };
            Fill::Number(value.unwrap_or(0.0))
        }
        Values::Categorical { .. } => {
            let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
            for &row in &rows {
                let code = cleaned.code(column, row);
                if code != MISSING_CODE {
                    *counts.entry(code).or_insert(0) += 1;
                }
            }
            let best = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            best.map_or(Fill::None, |(code, _)| Fill::Code(*code))
        }
    }
}

type Description = (Option<Moments>, (u64, bool), Option<Normalization>);

/// A column's statistics over the kept rows, and its scaling from the train split.
fn describe(cleaned: &Cleaned, column: usize, normalize: Normalize) -> Description {
    let spec = &cleaned.table.columns[column].spec;
    if spec.kind == ColumnKind::Categorical {
        let distinct = cleaned.categories[column].as_ref().map_or(0, |c| c.names.len() as u64);
        return (None, (distinct, false), None);
    }
    let all = || cleaned.kept().map(|row| cleaned.number(column, row));
    let moments = stats::moments(all);
    let distinct = stats::distinct(all(), DISTINCT_BOUND);
    let normalization = if spec.role == ColumnRole::Feature && normalize != Normalize::None {
        let train = stats::moments(|| cleaned.splits[0].iter().map(|&row| cleaned.number(column, row)));
        train.map(|m| {
            let (offset, scale) = match normalize {
                Normalize::Minmax => (m.min, m.max - m.min),
                _ => (m.mean, m.std.unwrap_or(0.0)),
            };
            let scale = if scale > 0.0 && scale.is_finite() { scale } else { 1.0 };
            Normalization { method: normalize, offset, scale }
        })
    } else {
        None
    };
    (moments, distinct, normalization)
}

/// Rows per label value in each split.
fn label_report(cleaned: &Cleaned, column: usize) -> LabelReport {
    let spec = &cleaned.table.columns[column].spec;
    let value_of = |row: u32| -> String {
        match (&cleaned.categories[column], spec.kind) {
            (Some(categories), ColumnKind::Categorical) => {
                categories.names.get(cleaned.code(column, row) as usize).cloned().unwrap_or_default()
            }
            _ => number_text(cleaned.number(column, row)),
        }
    };
    let listed = spec.kind == ColumnKind::Categorical
        || !stats::distinct(cleaned.kept().map(|row| cleaned.number(column, row)), LABEL_VALUES_LISTED).1;
    let mut distribution = BTreeMap::new();
    for (split, rows) in Split::ALL.into_iter().zip(&cleaned.splits) {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        if listed {
            for &row in rows {
                *counts.entry(value_of(row)).or_insert(0) += 1;
            }
        }
        distribution.insert(split, counts);
    }
    LabelReport { column: spec.name.clone(), kind: spec.kind, distribution }
}
