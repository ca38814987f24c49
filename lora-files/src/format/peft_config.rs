//! PEFT's `adapter_config.json`: the fields read and honoured, those refused by name because
//! they change the maths and are not implemented, and those that never change what a saved
//! adapter computes; `target_modules`, `rank_pattern` and `alpha_pattern` matched as PEFT
//! matches them.

use regex::Regex;
use serde_json::{Value, json};

use crate::error::{FileError, Result, io};

/// Fields read and honoured.
const HONOURED: [&str; 10] = [
    "r",
    "lora_alpha",
    "use_rslora",
    "target_modules",
    "rank_pattern",
    "alpha_pattern",
    "modules_to_save",
    "use_dora",
    "peft_type",
    "bias",
];

/// Fields that only affect initialisation, training or bookkeeping, never what a saved adapter
/// computes.
const INERT: [&str; 19] = [
    "auto_mapping",
    "base_model_name_or_path",
    "revision",
    "task_type",
    "inference_mode",
    "init_lora_weights",
    "lora_dropout",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "megatron_config",
    "megatron_core",
    "layers_pattern",
    "layers_to_transform",
    "exclude_modules",
    "qalora_group_size",
    "ensure_weight_tying",
    "peft_version",
];

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

pub(crate) struct Config {
    pub(crate) r: usize,
    pub(crate) alpha: f64,
    pub(crate) rslora: bool,
    pub(crate) dora: bool,
    pub(crate) rank_pattern: Vec<(Regex, String, usize)>,
    pub(crate) alpha_pattern: Vec<(Regex, String, f64)>,
    pub(crate) modules_to_save: Vec<String>,
    pub(crate) targets: Targets,
}

/// PEFT's `target_modules`: a list names modules exactly or as a `.name` suffix; a string is a
/// full-match regex; `all-linear` is every linear layer.
pub(crate) enum Targets {
    Any,
    List(Vec<String>),
    Regex(Regex),
    AllLinear,
}

impl Targets {
    pub(crate) fn admits(&self, module: &str, linear: bool) -> bool {
        match self {
            Targets::Any => true,
            Targets::List(names) => names.iter().any(|n| names_module(n, module)),
            Targets::Regex(re) => re.is_match(module),
            Targets::AllLinear => linear,
        }
    }
}

fn config_error(file: &str, field: &str, value: &Value, why: &str) -> FileError {
    FileError::Config {
        file: file.to_string(),
        field: field.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

fn pattern(file: &str, field: &str, key: &str) -> Result<Regex> {
    Regex::new(&format!(r"^(.*\.)?(?:{key})$"))
        .map_err(|e| config_error(file, field, &json!(key), &format!("not a regex: {e}")))
}

/// A JSON list of module names, or an error naming `field`.
fn names(file: &str, field: &str, value: &Value) -> Result<Vec<String>> {
    let bad = |v: &Value| config_error(file, field, v, "must be a list of module names");
    value
        .as_array()
        .ok_or_else(|| bad(value))?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(v)))
        .collect()
}

pub(crate) fn parse_config(file: &str, text: &str) -> Result<Config> {
    let root: Value = serde_json::from_str(text).map_err(|e| io(file, e))?;
    let obj = root
        .as_object()
        .ok_or_else(|| io(file, "the config is not a JSON object"))?;
    for (field, value) in obj {
        let f = field.as_str();
        if HONOURED.contains(&f) || INERT.contains(&f) || is_unset(value) {
            continue;
        }
        return Err(config_error(
            file,
            f,
            value,
            "this field changes what the adapter computes and is not supported",
        ));
    }
    let get = |f: &str| obj.get(f).cloned().unwrap_or(Value::Null);
    if let Some(t) = obj.get("peft_type")
        && t != "LORA"
    {
        return Err(config_error(
            file,
            "peft_type",
            t,
            "only PEFT's LORA type is read",
        ));
    }
    if let Some(b) = obj.get("bias")
        && b != "none"
    {
        return Err(config_error(
            file,
            "bias",
            b,
            "trained biases are not supported",
        ));
    }
    let r = get("r")
        .as_u64()
        .filter(|&r| r > 0)
        .ok_or_else(|| config_error(file, "r", &get("r"), "must be a positive integer"))?
        as usize;
    let alpha = get("lora_alpha")
        .as_f64()
        .filter(|a| a.is_finite())
        .ok_or_else(|| {
            config_error(
                file,
                "lora_alpha",
                &get("lora_alpha"),
                "must be a finite number",
            )
        })?;
    let flag = |f: &str| -> Result<bool> {
        match obj.get(f) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(config_error(file, f, v, "must be true or false")),
        }
    };
    let mut rank_pattern = Vec::new();
    if let Some(Value::Object(m)) = obj.get("rank_pattern") {
        for (k, v) in m {
            let r = v.as_u64().filter(|&r| r > 0).ok_or_else(|| {
                config_error(
                    file,
                    &format!("rank_pattern.{k}"),
                    v,
                    "must be a positive integer",
                )
            })?;
            rank_pattern.push((pattern(file, "rank_pattern", k)?, k.clone(), r as usize));
        }
    }
    let mut alpha_pattern = Vec::new();
    if let Some(Value::Object(m)) = obj.get("alpha_pattern") {
        for (k, v) in m {
            let a = v.as_f64().filter(|a| a.is_finite()).ok_or_else(|| {
                config_error(
                    file,
                    &format!("alpha_pattern.{k}"),
                    v,
                    "must be a finite number",
                )
            })?;
            alpha_pattern.push((pattern(file, "alpha_pattern", k)?, k.clone(), a));
        }
    }
    let modules_to_save = match obj.get("modules_to_save") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => names(file, "modules_to_save", v)?,
    };
    let targets = match obj.get("target_modules") {
        None | Some(Value::Null) => Targets::Any,
        Some(Value::String(s)) if s == "all-linear" => Targets::AllLinear,
        Some(Value::String(s)) => {
            Targets::Regex(Regex::new(&format!("^(?:{s})$")).map_err(|e| {
                config_error(
                    file,
                    "target_modules",
                    &json!(s),
                    &format!("not a regex: {e}"),
                )
            })?)
        }
        Some(v @ Value::Array(_)) => Targets::List(names(file, "target_modules", v)?),
        Some(v) => {
            return Err(config_error(
                file,
                "target_modules",
                v,
                "must be a list of module names or a regex",
            ));
        }
    };
    Ok(Config {
        targets,
        r,
        alpha,
        rslora: flag("use_rslora")?,
        dora: flag("use_dora")?,
        rank_pattern,
        alpha_pattern,
        modules_to_save,
    })
}

/// Whether `module` is `name` or ends with `.name` (PEFT's rule for module lists).
pub(crate) fn names_module(name: &str, module: &str) -> bool {
    module == name || module.ends_with(&format!(".{name}"))
}
