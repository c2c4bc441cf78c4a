//! No secret is ever printed: passwords holding every URL-special character, typed raw or
//! percent-encoded, go through the real `vectorgate` binary (health, health --json,
//! search, sync in dual mode, import, settings, init) against an unreachable port and
//! against the real server, and through `Debug`/`Display` of `Settings`. Neither the
//! password, its percent-encoded form, nor any distinctive piece of it may show.

mod support;

use support::{Fixture, DIM};
use vectorgate_composition::Settings;

/// Each password holds one URL-special character between two distinctive halves (a
/// password cut at that character must not leak either half), then all of them at once.
fn passwords() -> Vec<String> {
    let specials = [
        "/", "?", "#", "@", ":", "%", "&", "=", "+", ";", " ", "'", "\"", "ü", "\\",
    ];
    let mut all: Vec<String> = specials
        .iter()
        .enumerate()
        .map(|(i, c)| format!("Kq{i}vZx{c}Wp{i}rTy"))
        .collect();
    all.push(format!("Mz7Lq{}Vb3Nw", specials.concat()));
    all
}

/// Every byte that is not an unreserved URL character, percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The texts that must never be printed: the password as typed, percent-encoded, and
/// every piece of it of four or more characters between special characters.
fn forbidden(password: &str) -> Vec<String> {
    let mut texts = vec![password.to_string(), percent_encode(password)];
    texts.extend(
        password
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|piece| piece.len() >= 4)
            .map(str::to_string),
    );
    texts
}

#[track_caller]
fn assert_hidden(password: &str, context: &str, printed: &str) {
    for secret in forbidden(password) {
        assert!(
            !printed.contains(&secret),
            "{context}: printed {secret:?} of the password {password:?}:\n{printed}"
        );
    }
}

/// `host:port` of the shared PostgreSQL.
fn shared_endpoint(fx: &Fixture) -> String {
    let url = url::Url::parse(&fx.services.database_url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
}

/// The URLs a password is tried in: raw and percent-encoded, for a closed port, the real
/// server as a role that exists (trust authentication lets it in: the success paths) and
/// as a role that does not (the authentication error path).
fn urls(fx: &Fixture, password: &str) -> Vec<(String, String)> {
    let real = shared_endpoint(fx);
    let mut urls = Vec::new();
    for (form, typed) in [
        ("raw", password.to_string()),
        ("encoded", percent_encode(password)),
    ] {
        for (target, user, endpoint) in [
            ("closed port", "postgres", "127.0.0.1:1"),
            ("real server", "postgres", real.as_str()),
            ("unknown role", "vg_no_such_role", real.as_str()),
        ] {
            urls.push((
                format!("{form} password, {target}"),
                format!("postgres://{user}:{typed}@{endpoint}/vectorgate"),
            ));
        }
    }
    urls
}

#[test]
fn secrets_never_appear_in_any_command_output() {
    let fx = Fixture::new("secrets", true);
    let query = fx.dir_file(
        "query.json",
        &format!("[{}]", vec!["0.5"; DIM as usize].join(",")),
    );
    let import = fx.dir_file(
        "import.jsonl",
        &format!(
            "{{\"chunk_id\":1,\"tenant_id\":1,\"project_id\":1,\"embedding\":[{}]}}\n",
            vec!["0.25"; DIM as usize].join(",")
        ),
    );
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("pgvector", vec!["health"]),
        ("pgvector", vec!["health", "--json"]),
        ("pgvector", vec!["settings"]),
        ("pgvector", vec!["init"]),
        ("pgvector", vec!["import", "--file", &import]),
        (
            "pgvector",
            vec!["search", "--tenant", "1", "--vector-file", &query, "--json"],
        ),
        ("dual", vec!["sync"]),
        ("dual", vec!["sync", "--json"]),
    ];
    let all = passwords();
    // The password holding every special character goes through every command and URL;
    // each single character through `settings` (every setting printed) and through
    // `health` against the real server's authentication error (a connecting error path).
    for (index, password) in all.iter().enumerate() {
        let last = index + 1 == all.len();
        for (label, url) in urls(&fx, password) {
            for (mode, args) in &commands {
                let swept = last
                    || args[0] == "settings"
                    || (args == &vec!["health"] && label.ends_with("unknown role"));
                if !swept {
                    continue;
                }
                let run = fx.run_with(mode, args, &[("DATABASE_URL", &url)]);
                let context = format!("{label}: {mode} {}", args.join(" "));
                assert_hidden(
                    password,
                    &context,
                    &format!("{}\n{}", run.stdout, run.stderr),
                );
                assert!(!run.stderr.contains("panicked"), "{context}: {run:#?}");
            }
        }
    }
}

#[test]
fn the_database_url_flag_warns_only_when_it_holds_a_password() {
    let fx = Fixture::new("secrets_flag", false);
    let password = passwords().pop().unwrap();
    let with = format!(
        "postgres://postgres:{}@127.0.0.1:1/vectorgate",
        percent_encode(&password)
    );
    let run = fx.run("pgvector", &["health", "--database-url", &with]);
    assert!(
        run.stderr
            .contains("warning: --database-url holds a password"),
        "{run:#?}"
    );
    assert_hidden(
        &password,
        "--database-url",
        &format!("{}\n{}", run.stdout, run.stderr),
    );
    // Unencoded and unparsable: still warned about, still hidden.
    let raw = format!("postgres://postgres:{password}@127.0.0.1:1/vectorgate");
    let run = fx.run("pgvector", &["health", "--database-url", &raw]);
    assert!(run.stderr.contains("warning: --database-url"), "{run:#?}");
    assert_hidden(
        &password,
        "raw --database-url",
        &format!("{}\n{}", run.stdout, run.stderr),
    );

    let without = fx.services.database_url();
    let run = fx.run("pgvector", &["health", "--database-url", &without]);
    assert!(!run.stderr.contains("warning"), "{run:#?}");
}

#[test]
fn a_password_kept_in_a_file_is_used_and_never_printed() {
    let fx = Fixture::new("secrets_file", false);
    let password = passwords().pop().unwrap();
    let url = format!(
        "postgres://postgres:{}@{}/vectorgate",
        percent_encode(&password),
        shared_endpoint(&fx)
    );
    let file = fx.dir_file("database_url", &format!("{url}\n"));
    let mut cmd = fx.command("pgvector", &["health", "--json"]);
    cmd.env_remove("DATABASE_URL")
        .env("DATABASE_URL_FILE", &file);
    let run = support::Run::from(cmd.output().unwrap(), &["health", "--json"]);
    // Trust authentication: the URL from the file reaches the real server.
    assert_eq!(run.json()["stores"][0]["reachable"], true, "{run:#?}");
    assert_hidden(
        &password,
        "DATABASE_URL_FILE",
        &format!("{}\n{}", run.stdout, run.stderr),
    );
}

#[test]
fn settings_debug_and_display_hide_every_password_form() {
    for password in passwords() {
        for typed in [password.clone(), percent_encode(&password)] {
            let vars = [
                ("VECTOR_STORE_MODE", "dual".to_string()),
                ("EMBEDDING_DIM", "8".to_string()),
                (
                    "DATABASE_URL",
                    format!("postgres://app:{typed}@db.internal:5432/vectors?sslmode=require"),
                ),
                ("MILVUS_PASSWORD", typed.clone()),
                ("MILVUS_USERNAME", "app".to_string()),
            ];
            let printed =
                match Settings::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.clone()))) {
                    Ok(settings) => format!("{settings:?}\n{settings}\n{settings:#?}"),
                    // An unencoded password may not parse: the error must hide it too.
                    Err(err) => format!("{err:?}\n{err}"),
                };
            assert_hidden(&password, "Settings", &printed);
        }
    }
}
