//! A property test of the command line: random and mutated `.npy` headers,
//! text lines, raw sizes and option sets never panic, never leave a file or a
//! segment behind, and always end with 0, or with 1 or 2 and one line on
//! stderr.

mod cli_common;

use cli_common::{listing, npy_header, shm_of};
use proptest::prelude::*;
use std::process::Command;

/// An input file: its name and bytes.
#[derive(Debug, Clone)]
enum Input {
    Npy {
        descr: String,
        fortran: bool,
        shape: String,
        data_len: usize,
        flips: Vec<(usize, u8)>,
        cut: Option<usize>,
    },
    Text(Vec<String>),
    Raw(usize),
}

impl Input {
    fn file(&self) -> (&'static str, Vec<u8>) {
        match self {
            Input::Npy {
                descr,
                fortran,
                shape,
                data_len,
                flips,
                cut,
            } => {
                let mut b = npy_header(descr, *fortran, shape);
                b.extend((0..*data_len).map(|i| (i * 7) as u8));
                let len = b.len();
                for &(at, x) in flips {
                    b[at % len] ^= x;
                }
                if let Some(c) = cut {
                    b.truncate(c % (len + 1));
                }
                ("in.npy", b)
            }
            Input::Text(lines) => ("in.txt", lines.join("\n").into_bytes()),
            Input::Raw(n) => ("in.bin", (0..*n).map(|i| (i * 13) as u8).collect()),
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    let descr = prop::sample::select(vec![
        "<u8", "<f8", "<f4", "<i4", "<i2", "|u1", "|b1", "<u2", ">f8", "<c16", "<U4", "O", "<u9",
        "",
    ])
    .prop_map(str::to_owned);
    let shape = prop::sample::select(vec![
        "(3,)",
        "(4,)",
        "()",
        "(2, 3)",
        "(0,)",
        "(-1,)",
        "(99999999999999999999,)",
        "(1, 0, 5)",
        "[3]",
        "garbage",
        "(3",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        (
            descr,
            any::<bool>(),
            shape,
            0usize..80,
            prop::collection::vec((0usize..200, any::<u8>()), 0..3),
            prop::option::of(0usize..300),
        )
            .prop_map(|(descr, fortran, shape, data_len, flips, cut)| Input::Npy {
                descr,
                fortran,
                shape,
                data_len,
                flips,
                cut,
            }),
        prop::collection::vec(
            "[ \\t]{0,2}[-+]?[0-9]{0,22}(\\.[0-9]{0,4})?([eE][-+]?[0-9]{1,3})?|nan|inf|-inf|true|x|\\.|",
            0..12
        )
        .prop_map(Input::Text),
        (0usize..70).prop_map(Input::Raw),
    ]
}

fn flag(name: &'static str, values: Vec<&'static str>) -> impl Strategy<Value = Vec<String>> {
    prop::sample::select(values).prop_map(move |v| vec![name.to_owned(), v.to_owned()])
}

/// An option set for `shmproc run`: each option at most once, each present
/// with probability `p`. The first values of each list are valid ones; the
/// rest are hostile.
fn options(p: f64) -> impl Strategy<Value = Vec<String>> {
    let kernel = prop::sample::select(vec![
        "power",
        "power",
        "sum",
        "sum",
        "dot",
        "histogram",
        "mandelbrot",
        "nosuch",
    ]);
    let opts = (
        prop::option::weighted(
            p,
            flag(
                "--dtype",
                vec!["u64", "f64", "f32", "i32", "u16", "bool", "i8", "f16", ""],
            ),
        ),
        prop::option::weighted(
            p,
            flag(
                "--times",
                vec!["1", "3", "40", "0", "-1", "99999999999", "x"],
            ),
        ),
        prop::option::weighted(
            p,
            flag(
                "--param",
                vec![
                    "times=2",
                    "bins=7",
                    "lo=1",
                    "hi=9",
                    "width=4",
                    "height=3",
                    "max_iter=5",
                    "times=",
                    "bins=0",
                    "bins=70000",
                    "hi=-1",
                    "nosuch=1",
                    "times",
                    "=3",
                ],
            ),
        ),
        prop::option::weighted(p, flag("--workers", vec!["1", "2", "2", "0", "x"])),
        prop::option::weighted(p, flag("--chunk", vec!["1000", "7777", "0"])),
        prop::option::weighted(
            p,
            flag(
                "--backend",
                vec![
                    "sequential",
                    "threads",
                    "rayon",
                    "processes",
                    "processes-copy",
                    "bogus",
                ],
            ),
        ),
        prop::option::weighted(
            p,
            flag(
                "--output",
                vec!["out.npy", "out.txt", "out.bin", "in.npy", "sub/out.npy"],
            ),
        ),
        prop::option::weighted(p / 3.0, flag("--format", vec!["npy", "raw", "text", "csv"])),
        prop::option::weighted(p / 3.0, flag("--input-format", vec!["npy", "raw", "text"])),
        prop::option::weighted(p / 3.0, flag("--n", vec!["5", "100", "0", "-3"])),
        (
            prop::option::weighted(p / 2.0, Just(vec!["--json".to_owned()])),
            prop::option::weighted(p / 3.0, Just(vec!["--quiet".to_owned()])),
            prop::option::weighted(p / 3.0, Just(vec!["--input2".to_owned(), "in2".to_owned()])),
            prop::option::weighted(p / 8.0, Just(vec!["--no-such-flag".to_owned()])),
        ),
    );
    (kernel, prop::bool::weighted(0.85), opts).prop_map(
        |(k, with_input, (a, b, c, d, e, f, g, h, i, j, (k1, k2, k3, k4)))| {
            let mut v = vec!["run".to_owned(), k.to_owned()];
            if with_input {
                v.push("--input".to_owned());
                v.push("INPUT".to_owned());
            }
            for o in [a, b, c, d, e, f, g, h, i, j, k1, k2, k3, k4]
                .into_iter()
                .flatten()
            {
                v.extend(o);
            }
            v
        },
    )
}

fn check(input: &Input, args: &[String]) {
    let d = tempfile::tempdir().expect("temp dir");
    let dir = d.path();
    let (name, bytes) = input.file();
    std::fs::write(dir.join(name), &bytes).expect("write input");
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "INPUT" => name.to_owned(),
            "in2" => name.to_owned(),
            _ => a.clone(),
        })
        .collect();
    let before = listing(dir);
    let child = Command::new(env!("CARGO_BIN_EXE_shmproc"))
        .args(&args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start shmproc");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for shmproc");
    let err = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(!err.contains("panicked"), "{args:?}: a panic: {err}");
    match code {
        Some(0) => assert!(err.is_empty(), "{args:?}: success with stderr {err:?}"),
        Some(1 | 2) => {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
            assert!(err.starts_with("shmproc: error: "), "{args:?}: {err}");
        }
        other => panic!("{args:?}: exit {other:?}: {err}"),
    }
    let mut want = before.clone();
    if code == Some(0) {
        if let Some(i) = args.iter().position(|a| a == "--output") {
            let o = &args[i + 1];
            if !want.contains(o) {
                want.push(o.clone());
                want.sort();
            }
        }
    }
    assert_eq!(
        listing(dir),
        want,
        "{args:?}: files left (exit {code:?}: {err})"
    );
    assert_eq!(shm_of(pid), Vec::<String>::new(), "{args:?}: segments left");
    if code != Some(0) || !args.iter().any(|a| a == "--output") {
        assert_eq!(
            std::fs::read(dir.join(name)).expect("input"),
            bytes,
            "{args:?}: the input changed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Mostly valid options over random and mutated inputs.
    #[test]
    fn random_inputs_never_panic_leak_or_say_more_than_one_line(
        input in input(),
        args in options(0.15),
    ) {
        check(&input, &args);
    }

    /// Many options at once, hostile ones among them.
    #[test]
    fn random_option_sets_never_panic_leak_or_say_more_than_one_line(
        input in input(),
        args in options(0.5),
    ) {
        check(&input, &args);
    }
}
