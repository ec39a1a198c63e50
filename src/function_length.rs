//! Keeps functions short enough to read as a list of named steps: reads every file under `src/` and fails,
//! naming each one, when a production function (anything outside `#[cfg(test)]` modules and test files) is
//! longer than [`MAX_LINES`] lines from its `fn` to its closing brace.

use std::path::{Path, PathBuf};

use crate::source_text::code_only;

const MAX_LINES: usize = 100;

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The index of the brace closing the one opened at `open`.
fn closing(code: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn word_at(code: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    code.get(i..i + w.len()) == Some(&w[..])
        && (i == 0 || !is_ident(code[i - 1]))
        && !code.get(i + w.len()).copied().is_some_and(is_ident)
}

fn line_of(code: &[char], i: usize) -> usize {
    1 + code[..i].iter().filter(|c| **c == '\n').count()
}

/// Functions of one file longer than `MAX_LINES`: (name, first line, lines). Bodies of `#[cfg(test)]`
/// items are skipped.
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(text);
    let squeezed: String = code.iter().collect();
    let mut skip: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(pos) = squeezed[from..].find("#[cfg(test)]") {
        let at = from + pos;
        let brace = squeezed[at..].find(['{', ';']).map(|p| at + p);
        if let Some(b) = brace.filter(|b| code[*b] == '{') {
            let start = squeezed[..at].chars().count();
            let open = squeezed[..b].chars().count();
            skip.push((start, closing(&code, open)));
        }
        from = at + 1;
    }
    let mut out = Vec::new();
    for i in 0..code.len() {
        if !word_at(&code, i, "fn") || skip.iter().any(|(s, e)| (*s..=*e).contains(&i)) {
            continue;
        }
        let name: String = code[i + 2..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| is_ident(**c))
            .collect();
        if name.is_empty() {
            continue; // `fn(..)` pointer types
        }
        let mut paren = 0i32;
        let mut body = None;
        for (j, c) in code.iter().enumerate().skip(i) {
            match c {
                '(' | '[' => paren += 1,
                ')' | ']' => paren -= 1,
                ';' if paren == 0 => break,
                '{' if paren == 0 => {
                    body = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = body else { continue };
        let (first, last) = (line_of(&code, i), line_of(&code, closing(&code, open)));
        let lines = last - first + 1;
        if lines > MAX_LINES {
            out.push((name, first, lines));
        }
    }
    out
}

/// Source files compiled outside tests: everything under `src/` except test files and modules a parent
/// declares `#[cfg(test)] mod x;`.
fn production_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    let test_modules: Vec<String> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let code: String = code_only(&text).into_iter().collect();
            let words: Vec<&str> = code.split_whitespace().collect();
            words
                .windows(3)
                .filter(|w| w[0] == "#[cfg(test)]" && w[1] == "mod")
                .map(|w| w[2].trim_end_matches(';').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for path in entries {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if test_modules.contains(&stem) || stem == "tests" {
            continue;
        }
        if path.is_dir() {
            production_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_production_function_is_longer_than_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    production_files(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source is readable");
        for (name, line, lines) in long_functions(&text) {
            let shown = file.strip_prefix(&src).unwrap_or(file).display();
            long.push(format!("src/{shown}:{line} fn {name}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "{} production functions are over {MAX_LINES} lines; split each into named steps:\n{}",
        long.len(),
        long.join("\n")
    );
}

#[test]
fn the_measure_counts_from_fn_to_its_brace_and_skips_test_modules() {
    let body = "    let x = '{';\n    // }\n    let s = \"}}\";\n".repeat(40);
    let text = format!(
        "fn long() {{\n{body}}}\nfn short() {{ }}\n#[cfg(test)]\nmod tests {{\n    fn also_long() {{\n{body}    }}\n}}\n"
    );
    let found = long_functions(&text);
    assert_eq!(found, vec![("long".to_string(), 1, 122)]);
}
