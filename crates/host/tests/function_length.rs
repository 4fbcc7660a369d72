//! No function in the host's sources is longer than 80 lines (signature to closing brace): long
//! start-up or request paths are split into named steps.

use std::path::Path;

const MAX_LINES: usize = 80;

/// Whether `line` starts a function item (after its indentation).
fn starts_fn(line: &str) -> bool {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    rest.starts_with("fn ")
}

/// `(name, first line, length)` of every function whose body closes at its own indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !starts_fn(line) || line.trim_end().ends_with(';') {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        if let Some(j) = lines[i + 1..].iter().position(|l| *l == close) {
            let name = line.trim_start().split("fn ").nth(1).unwrap_or("");
            let name = name.split(['(', '<']).next().unwrap_or("").to_string();
            out.push((name, i + 1, j + 2));
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut too_long = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        for (name, line, len) in functions(&text) {
            if len > MAX_LINES {
                too_long.push(format!("{file}:{line} {name}: {len} lines"));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {MAX_LINES} lines:\n{}",
        too_long.join("\n")
    );
}

#[test]
fn measures_from_signature_to_closing_brace() {
    let text = "fn a() {\n    x();\n}\n\n    pub async fn b(\n        y: u8,\n    ) {\n    }\n";
    assert_eq!(
        functions(text),
        vec![("a".to_string(), 1, 3), ("b".to_string(), 5, 4)]
    );
}
