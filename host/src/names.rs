//! Names of tenants, functions and models, and the rules they follow.

use std::fmt;

/// The tenant that owns the first admin key and tenant-less deploys.
pub const DEFAULT_TENANT: &str = "default";

/// A name that breaks the rules: 1 to 63 lowercase letters, digits and `-`,
/// not starting with `-`.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} name `{}`: use 1 to 63 lowercase letters, digits and `-`, not starting with `-`", name.escape_debug())]
pub struct InvalidName {
    what: &'static str,
    name: String,
}

/// A function name: lowercase letters, digits and `-`, 1 to 63 characters,
/// starting with a letter or digit (so it is also a valid DNS label).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionName(String);

impl FunctionName {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        check("function", name).map(|()| Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a tenant name; the rules are those of function names.
pub fn check_tenant_name(name: &str) -> Result<(), InvalidName> {
    check("tenant", name)
}

/// Checks a model name; the rules are those of function names.
pub fn check_model_name(name: &str) -> Result<(), InvalidName> {
    check("model", name)
}

/// Checks a dataset name; the rules are those of function names.
pub fn check_dataset_name(name: &str) -> Result<(), InvalidName> {
    check("dataset", name)
}

/// Checks an alert sink's name; the rules are those of function names.
pub fn check_sink_name(name: &str) -> Result<(), InvalidName> {
    check("sink", name)
}

fn check(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid { Ok(()) } else { Err(InvalidName { what, name: name.to_owned() }) }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `prefix-` and 16 random hex digits: the id of a job, an alert...
pub fn random_id(prefix: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["hello", "a", "my-func-2", &"x".repeat(63)] {
            assert!(FunctionName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Hello", "-x", "a_b", "a.b", "a/b", &"x".repeat(64), "héllo"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad}");
        }
    }
}
