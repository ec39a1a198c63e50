//! The scenario's verdicts: `RESULT <name> PASS|FAIL <detail>` lines on the console, and a bench
//! scenario's samples: `BENCH <metric> <series> <value>` lines.

use super::boot::Console;

#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

pub fn parse(lines: &[String]) -> Vec<Verdict> {
    lines
        .iter()
        .filter_map(|line| {
            // The kernel may print on the same serial line; RESULT can start mid-line.
            let rest = &line[line.find("RESULT ")? + "RESULT ".len()..];
            let mut words = rest.splitn(3, ' ');
            let name = words.next()?.to_owned();
            let passed = match words.next()? {
                "PASS" => true,
                "FAIL" => false,
                _ => return None,
            };
            let detail = words.next().unwrap_or("").trim().to_owned();
            Some(Verdict {
                name,
                passed,
                detail,
            })
        })
        .collect()
}

/// Every `BENCH <metric> <series> <value>` line's value by (metric, series), in console order.
#[allow(dead_code)] // Only the benches read samples.
pub fn bench_samples(console: &Console) -> std::collections::BTreeMap<(String, String), Vec<f64>> {
    let mut samples: std::collections::BTreeMap<(String, String), Vec<f64>> = Default::default();
    for line in &console.lines {
        let Some(rest) = line.split("BENCH ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [metric, series, value] = words[..] {
            let value: f64 = value.parse().unwrap_or_else(|_| {
                panic!("not a number in {line:?}; see {}", console.log.display())
            });
            samples
                .entry((metric.to_string(), series.to_string()))
                .or_default()
                .push(value);
        }
    }
    samples
}

/// Panics unless the VM finished and every name in `expected` passed and nothing failed. The message
/// holds each problem and the console tail, and points at the whole log.
pub fn assert_all_passed(console: &Console, expected: &[&str]) {
    let verdicts = parse(&console.lines);
    let mut problems = Vec::new();
    if !console.finished {
        problems.push("the VM did not power off before the timeout (killed)".to_owned());
    }
    for v in verdicts.iter().filter(|v| !v.passed) {
        problems.push(format!("FAIL {}: {}", v.name, v.detail));
    }
    for name in expected {
        if !verdicts.iter().any(|v| v.name == *name) {
            problems.push(format!("no RESULT for {name}"));
        }
    }
    for v in &verdicts {
        if !expected.contains(&v.name.as_str()) {
            problems.push(format!(
                "unexpected RESULT {} (add it to the test's list)",
                v.name
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    let tail_start = console.lines.len().saturating_sub(40);
    panic!(
        "VM scenario failed:\n  {}\n--- console tail ({} lines in {}) ---\n{}",
        problems.join("\n  "),
        console.lines.len(),
        console.log.display(),
        console.lines[tail_start..].join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::{assert_all_passed, parse, Verdict};
    use crate::vm::boot::Console;

    fn console(lines: &[&str], finished: bool) -> Console {
        Console {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            finished,
            log: "console.log".into(),
        }
    }

    #[test]
    fn every_expected_result_passing_is_a_pass() {
        assert_all_passed(
            &console(&["RESULT a PASS", "RESULT b PASS x"], true),
            &["a", "b"],
        );
    }

    #[test]
    #[should_panic(expected = "no RESULT for b")]
    fn a_missing_result_fails() {
        assert_all_passed(&console(&["RESULT a PASS"], true), &["a", "b"]);
    }

    #[test]
    #[should_panic(expected = "FAIL b: reply from 10.20.0.1")]
    fn a_failed_result_fails() {
        assert_all_passed(
            &console(
                &["RESULT a PASS", "RESULT b FAIL reply from 10.20.0.1"],
                true,
            ),
            &["a", "b"],
        );
    }

    #[test]
    #[should_panic(expected = "did not power off")]
    fn a_vm_killed_at_the_timeout_fails_even_when_all_passed() {
        assert_all_passed(&console(&["RESULT a PASS"], false), &["a"]);
    }

    #[test]
    fn result_lines_are_read_even_after_kernel_noise() {
        let lines = [
            "[    1.2] random: crng init done",
            "RESULT vlan10_gateway PASS 3 replies",
            "[ 2.0] x RESULT isolation FAIL got a reply from 10.20.0.1",
            "RESULT bare PASS",
            "RESULT odd MAYBE",
        ]
        .map(String::from);
        assert_eq!(
            parse(&lines),
            [
                Verdict {
                    name: "vlan10_gateway".into(),
                    passed: true,
                    detail: "3 replies".into()
                },
                Verdict {
                    name: "isolation".into(),
                    passed: false,
                    detail: "got a reply from 10.20.0.1".into()
                },
                Verdict {
                    name: "bare".into(),
                    passed: true,
                    detail: String::new()
                },
            ]
        );
    }
}
