//! Tests of `main`: the config file against the command's flags, and its fuzzing.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;
use shoal_proxy::config_file;

use super::Cli;

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `deploy/shoal.example.toml` names every setting of `serve` (settings without a
/// default as a commented example), and every value in it, commented or not, is valid.
#[test]
fn the_example_config_names_every_setting_and_checks() {
    let root = Cli::command();
    let serve = root.find_subcommand("serve").unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/shoal.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let set: Vec<String> = config_file::load(serve, &path)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let all = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(all.path(), &uncommented).unwrap();
    let named: Vec<String> = config_file::load(serve, all.path())
        .unwrap_or_else(|e| panic!("the example's commented values: {e:?}"))
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert!(set.len() < named.len(), "some settings are examples");
    for arg in serve.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        if key == "config" || key == "help" {
            continue;
        }
        assert!(named.iter().any(|k| k == key), "the example lacks {key}");
    }
}

/// Flags > environment > file > defaults, and errors name the key and the line.
#[test]
fn the_file_sits_between_environment_and_defaults() {
    let root = Cli::command();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "threads = 5\nregion = \"from-file\"\nshutdown-timeout = 3\ntrusted-proxy = [\"10.0.0.0/8\", \"192.168.0.1\"]\nmetrics-auth = true\n",
    )
    .unwrap();
    let f = file.path().to_str().unwrap();
    // Only this test sets SHOAL_REGION in this binary. clap reads the environment when
    // the command is built, as `main` builds it at start.
    std::env::set_var("SHOAL_REGION", "from-env");
    let with_env = Cli::command();
    let layered = config_file::layered(
        &with_env,
        argv(&["shoal", "serve", "--config", f, "--threads", "9"]),
    );
    std::env::remove_var("SHOAL_REGION");
    let layered = layered.unwrap();
    let matches = with_env
        .clone()
        .try_get_matches_from(&layered.argv)
        .unwrap();
    let m = matches.subcommand_matches("serve").unwrap();
    assert_eq!(
        m.get_one::<usize>("threads"),
        Some(&9),
        "a flag beats the file"
    );
    assert_eq!(
        m.get_one::<String>("region").unwrap(),
        "from-env",
        "the environment beats the file"
    );
    assert_eq!(
        m.get_one::<u64>("shutdown_timeout"),
        Some(&3),
        "the file beats the default"
    );
    assert_eq!(
        m.get_one::<u64>("snapshot_every"),
        Some(&5000),
        "defaults stay"
    );
    let proxies: Vec<&String> = m.get_many::<String>("trusted_proxies").unwrap().collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.0.1"]);
    assert!(m.get_flag("metrics_auth"));
    assert_eq!(
        layered.from_file,
        ["metrics-auth", "shutdown-timeout", "trusted-proxy"]
    );
    let shown = config_file::show(
        root.find_subcommand("serve").unwrap(),
        m,
        &layered.from_file,
    );
    assert!(
        shown.contains("shutdown-timeout = \"3\"  # file"),
        "{shown}"
    );
    assert!(shown.contains("threads = \"9\"  # flag"), "{shown}");

    std::fs::write(
        file.path(),
        "threads = 2\nbogus = 1\n\ngc-interval = \"sometimes\"\nmetrics-auth = \"yes\"\n",
    )
    .unwrap();
    let errors = config_file::layered(&root, argv(&["shoal", "serve", "--config", f]))
        .err()
        .unwrap();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains(":2: bogus: no such setting"),
        "{errors:?}"
    );
    assert!(errors[1].contains(":4: gc-interval:"), "{errors:?}");
    assert!(
        errors[2].contains(":5: metrics-auth: a switch"),
        "{errors:?}"
    );
    // A command line without --config is left as it is.
    let plain = argv(&["shoal", "serve", "--threads", "4"]);
    assert_eq!(
        config_file::layered(&root, plain.clone()).unwrap().argv,
        plain
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("SHOAL_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..Default::default()
    })]

    /// Any text as the config file is read into settings or refused with errors that
    /// name the file, never a panic (fuzzing, with `shoal_proxy::fuzz_tests`).
    #[test]
    fn any_config_file_is_read_or_refused(
        text in "((#[^\\n]{0,10}|[a-z-]{1,20}|threads|listen|region|snapshot-every|metadata-cache|voters|cache-max-bytes|gc-interval|trusted-proxy|metrics-auth|\\[[a-z.]{0,8}\\]) ?=? ?(\"[^\"\\n]{0,20}\"|'[^'\\n]{0,10}'|[0-9.e+-]{1,8}|true|false|\\[[0-9\", ]{0,12}\\]|\\{[a-z =0-9]{0,12}\\})?\\n){0,8}|\\PC{0,200}"
    ) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let root = Cli::command();
        let serve = root.find_subcommand("serve").unwrap();
        if let Err(errors) = config_file::load(serve, file.path()) {
            let shown = file.path().display().to_string();
            proptest::prop_assert!(!errors.is_empty());
            for e in errors {
                proptest::prop_assert!(e.starts_with(&shown), "{e}");
            }
        }
    }
}
