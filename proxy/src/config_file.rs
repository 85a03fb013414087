//! `shoal serve --config FILE` (or `SHOAL_CONFIG`): a TOML file whose top-level keys are the
//! `serve` flags' long names (`listen = "0.0.0.0:5000"`, `cache-max-bytes = "50GiB"`,
//! lists as arrays, switches as booleans).
//!
//! The flags stay the one definition of every setting and its default (clap, in `main`);
//! the file only supplies values, as if given on the command line, for the settings that
//! neither a flag nor their `SHOAL_*` variable sets. So the precedence is flags >
//! environment > file > defaults, decided here once (`layered`). A key that names no flag,
//! or a value its flag's parser refuses, is an error naming the key and its line (`check`,
//! what `shoal config check` runs). `show` prints the effective settings with secrets
//! masked.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, ArgMatches, Command};

/// The flag that names the file; not itself a key of it.
const CONFIG: &str = "config";
const CONFIG_ENV: &str = "SHOAL_CONFIG";

/// One key of the file: its line and the command-line arguments it stands for.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub args: Vec<OsString>,
}

/// What the file and the command line made of `serve`: the arguments to parse, and the
/// keys whose values came from the file (for `show`).
pub struct Layered {
    pub argv: Vec<OsString>,
    pub from_file: Vec<String>,
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// A TOML value as the text a flag takes; `None` for a table (no flag takes one).
fn flag_text(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Integer(i) => Some(vec![i.to_string()]),
        toml::Value::Float(f) => Some(vec![f.to_string()]),
        toml::Value::Boolean(b) => Some(vec![b.to_string()]),
        toml::Value::Datetime(d) => Some(vec![d.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| {
                flag_text(i)
                    .filter(|t| t.len() == 1)
                    .map(|mut t| t.remove(0))
            })
            .collect(),
        toml::Value::Table(_) => None,
    }
}

/// Reads `path` into entries, checking every key against `serve`'s flags and every value
/// against its flag's parser. Errors are `FILE:LINE: key: what is wrong`, all of them.
pub fn load(serve: &Command, path: &Path) -> Result<Vec<Entry>, Vec<String>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{shown}: {e}")])?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].lines().count().max(1)
        });
        vec![format!("{shown}:{line}: {}", e.message())]
    })?;
    let mut entries = Vec::new();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (key, value) in &table {
        let line = line_of(&text, key);
        let at = |what: String| (line, format!("{shown}:{line}: {key}: {what}"));
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != CONFIG)
        else {
            errors.push(at(
                "no such setting (the keys are `shoal serve`'s flags without --)".into(),
            ));
            continue;
        };
        let Some(texts) = flag_text(value) else {
            errors.push(at("a table or nested list is no setting's value".into()));
            continue;
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        if switch && !matches!(value, toml::Value::Boolean(_)) {
            errors.push(at("a switch: true or false".into()));
            continue;
        }
        if texts.len() != 1 && !repeatable {
            errors.push(at("takes one value, not a list".into()));
            continue;
        }
        let mut args = Vec::new();
        for t in &texts {
            if switch {
                if t == "true" {
                    args.push(OsString::from(format!("--{key}")));
                }
                continue;
            }
            let flag = OsString::from(format!("--{key}={t}"));
            if let Some(why) = value_error(serve, &flag) {
                errors.push(at(why));
                continue;
            }
            args.push(OsString::from(format!("--{key}={t}")));
        }
        entries.push(Entry {
            key: key.clone(),
            line,
            args,
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        errors.sort();
        Err(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// What `serve`'s parser says of `flag` given alone, if it refuses the value itself (what
/// the flag needs from others, `--origin` for `--cluster-listen`, is checked at start).
fn value_error(serve: &Command, flag: &OsString) -> Option<String> {
    use clap::error::ErrorKind as K;
    let argv = [OsString::from("serve"), flag.clone()];
    let e = serve.clone().try_get_matches_from(argv).err()?;
    match e.kind() {
        K::InvalidValue | K::ValueValidation | K::UnknownArgument | K::NoEquals => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or(&msg);
            Some(first.trim_start_matches("error: ").to_string())
        }
        _ => None,
    }
}

/// The `serve` flags given on the command line `args` (long names).
fn given(args: &[OsString]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// `argv` (the whole command line) with the file's settings put in, when `argv` runs
/// `serve` with `--config` or `SHOAL_CONFIG` names a file. A setting given as a flag or by
/// its environment variable keeps that value.
pub fn layered(root: &Command, argv: Vec<OsString>) -> Result<Layered, Vec<String>> {
    let unchanged = |argv| {
        Ok(Layered {
            argv,
            from_file: Vec::new(),
        })
    };
    if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return unchanged(argv);
    }
    let rest = &argv[2..];
    let mut file: Option<PathBuf> = None;
    for (i, a) in rest.iter().enumerate() {
        let a = a.to_string_lossy();
        if let Some(p) = a.strip_prefix("--config=") {
            file = Some(p.into());
        } else if a == "--config" {
            file = rest.get(i + 1).map(PathBuf::from);
        }
    }
    let file = file.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
    let Some(file) = file else {
        return unchanged(argv);
    };
    let serve = root
        .find_subcommand("serve")
        .expect("shoal has a serve command");
    let entries = load(serve, &file)?;
    let on_command_line = given(rest);
    let mut out: Vec<OsString> = argv[..2].to_vec();
    let mut from_file = Vec::new();
    for e in entries {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(e.key.as_str()))
            .expect("load kept only known keys");
        let by_env = arg.get_env().is_some_and(|v| std::env::var_os(v).is_some());
        if by_env || on_command_line.contains(&e.key) {
            continue;
        }
        out.extend(e.args);
        from_file.push(e.key);
    }
    out.extend(rest.iter().cloned());
    Ok(Layered {
        argv: out,
        from_file,
    })
}

/// Whether a setting's value is a secret (masked by `show`).
fn secret(key: &str) -> bool {
    key.contains("secret") || key.contains("password")
}

/// The effective settings of a parsed `serve` as TOML, each with where it came from, secrets
/// masked.
pub fn show(serve: &Command, matches: &ArgMatches, from_file: &[String]) -> String {
    use clap::parser::ValueSource;
    let mut out =
        String::from("# shoal serve: the effective settings (flags > SHOAL_* > file > defaults)\n");
    for arg in serve.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        if key == CONFIG {
            continue;
        }
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(_) if from_file.iter().any(|k| k == key) => "file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let quoted = |v: &str| toml::Value::String(v.to_string()).to_string();
        let value = if secret(key) && !values.is_empty() && !switch {
            quoted("***")
        } else if switch {
            matches.get_flag(id).to_string()
        } else if matches!(arg.get_action(), ArgAction::Append) {
            format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| quoted(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if let Some(v) = values.first() {
            quoted(v)
        } else {
            out.push_str(&format!("# {key} = (unset)\n"));
            continue;
        };
        out.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    out
}
