//! `triadapt heatmap`, `plot` and `table` on hand-written results directories: a GLUE sweep
//! (eight tasks, several methods and seeds, rank patterns for MNLI), an RTE warm-up ablation
//! (two methods, each with its own swept key, three seeds, curve.csv per run) and an RTE sweep
//! at two rank budgets (rank patterns). Expected values are computed here from the fixtures'
//! own files (rank_pattern.json, curve.csv), not taken from the code under test.
//!
//! Set TRIADAPT_REPORT_DEMO=<dir> to keep copies of the figures and the table there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use triadapt::report::{self, curves::PlotOptions, heatmap::HeatmapOptions, Runs};

const METRICS: [&str; 8] =
    ["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr", "m_accuracy", "mm_accuracy", "combined_score"];

/// The scores of one TriAdaptLoRA run per task and seed (seed 1, seed 2), as (metric, value).
fn triadapt_scores(task: &str, seed: i64) -> Vec<(&'static str, f64)> {
    let s = |a: f64, b: f64| if seed == 1 { a } else { b };
    match task {
        "mnli" => vec![("m_accuracy", s(0.90, 0.92)), ("mm_accuracy", s(0.91, 0.91))],
        "sst2" => vec![("accuracy", s(0.95, 0.96))],
        "cola" => vec![("matthews_correlation", s(0.70, 0.72))],
        "qqp" => vec![("accuracy", s(0.90, 0.92)), ("f1", s(0.88, 0.88))],
        "qnli" => vec![("accuracy", s(0.94, 0.94))],
        "rte" => vec![("accuracy", s(0.88, 0.86))],
        "mrpc" => vec![("accuracy", s(0.90, 0.92))],
        "stsb" => vec![("pearson", s(0.92, 0.92)), ("spearmanr", s(0.90, 0.92))],
        _ => unreachable!(),
    }
}

fn main_of(task: &str) -> &'static str {
    match task {
        "cola" => "matthews_correlation",
        "stsb" => "combined_score",
        _ => "accuracy",
    }
}

/// A row of runs.csv: (run_id, task, method, seed, swept values, status, scores, params, run_dir).
struct Row {
    id: String,
    task: String,
    method: String,
    seed: i64,
    swept: Vec<String>,
    status: &'static str,
    scores: Vec<(&'static str, f64)>,
    params: i64,
    run_dir: String,
}

fn write_runs_csv(dir: &Path, swept: &[&str], rows: &[Row]) {
    let mut s = String::from("run_id,name,task,method,seed");
    for k in swept {
        write!(s, ",{k}").unwrap();
    }
    s.push_str(",status,error,main_metric,best_score,best_step");
    for m in METRICS {
        write!(s, ",{m}").unwrap();
    }
    s.push_str(",trainable_params,total_rank,rank_budget,wall_seconds,run_dir\n");
    for r in rows {
        write!(s, "{},demo,{},{},{}", r.id, r.task, r.method, r.seed).unwrap();
        for v in &r.swept {
            write!(s, ",{v}").unwrap();
        }
        let get = |k: &str| r.scores.iter().find(|(m, _)| *m == k).map(|(_, v)| *v);
        let best = match r.task.as_str() {
            "mnli" => get("m_accuracy"),
            "stsb" => Some((get("pearson").unwrap() + get("spearmanr").unwrap()) / 2.0),
            t => get(main_of(t)),
        };
        let error = if r.status == "failed" { "\"run failed: the loss became NaN,\nat step 3\"" } else { "" };
        write!(s, ",{},{error},{},{},100", r.status, main_of(&r.task), best.unwrap()).unwrap();
        for m in METRICS {
            match get(m) {
                Some(v) => write!(s, ",{v}").unwrap(),
                None => s.push(','),
            }
        }
        writeln!(s, ",{},144,144,12.5,{}", r.params, r.run_dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("runs.csv"), s).unwrap();
}

const SUFFIXES: [&str; 6] = [
    "attention.self.query_proj",
    "attention.self.key_proj",
    "attention.self.value_proj",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// Writes a 12-layer rank_pattern.json with ranks f(layer, matrix); returns the total rank.
fn write_pattern(dir: &Path, f: impl Fn(usize, usize) -> i64) -> i64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut map = serde_json::Map::new();
    let mut total = 0;
    for l in 0..12 {
        for (j, s) in SUFFIXES.iter().enumerate() {
            let r = f(l, j);
            total += r;
            map.insert(format!("deberta.encoder.layer.{l}.{s}"), r.into());
        }
    }
    std::fs::write(dir.join("rank_pattern.json"), serde_json::to_string_pretty(&map).unwrap()).unwrap();
    total
}

const TASKS: [&str; 8] = ["mnli", "sst2", "cola", "qqp", "qnli", "rte", "mrpc", "stsb"];

/// The GLUE results directory. Returns it and the total rank of the TriAdaptLoRA MNLI run the
/// heatmap must show (seed 2: the higher best_score).
fn glue_fixture(root: &Path) -> (PathBuf, i64) {
    let dir = root.join("results").join("glue");
    let mut rows = Vec::new();
    let mut triadapt_total = 0;
    for task in TASKS {
        for seed in [1, 2] {
            // TriAdaptLoRA: run folders (relative run_dir) for MNLI only.
            let id = format!("{task}_triadapt_s{seed}");
            let run_dir = if task == "mnli" {
                let total = write_pattern(&dir.join("runs").join(&id), |l, j| if seed == 2 { 1 + ((l + 2 * j) % 4) as i64 } else { 2 });
                if seed == 2 {
                    triadapt_total = total;
                }
                format!("runs/{id}")
            } else {
                String::new()
            };
            rows.push(Row {
                id,
                task: task.into(),
                method: "triadapt".into(),
                seed,
                swept: vec![],
                status: "finished",
                scores: triadapt_scores(task, seed),
                params: 330_000,
                run_dir,
            });
            // LoRA: every score 0.01 lower, no run folders.
            let scores = triadapt_scores(task, seed).into_iter().map(|(m, v)| (m, v - 0.01)).collect();
            rows.push(Row {
                id: format!("{task}_lora_s{seed}"),
                task: task.into(),
                method: "lora".into(),
                seed,
                swept: vec![],
                status: "finished",
                scores,
                params: 340_000,
                run_dir: String::new(),
            });
        }
    }
    // AdaLoRA: RTE and MNLI only (absolute run_dir); IncreLoRA: MNLI only.
    let ada = dir.join("runs").join("mnli_adalora_s1");
    write_pattern(&ada, |l, j| if l < 3 { 0 } else { ((l * j) % 6) as i64 });
    rows.push(Row {
        id: "mnli_adalora_s1".into(),
        task: "mnli".into(),
        method: "adalora".into(),
        seed: 1,
        swept: vec![],
        status: "finished",
        scores: vec![("m_accuracy", 0.89), ("mm_accuracy", 0.90)],
        params: 320_000,
        run_dir: ada.display().to_string(),
    });
    rows.push(Row {
        id: "rte_adalora_s1".into(),
        task: "rte".into(),
        method: "adalora".into(),
        seed: 1,
        swept: vec![],
        status: "finished",
        scores: vec![("accuracy", 0.85)],
        params: 320_000,
        run_dir: String::new(),
    });
    write_pattern(&dir.join("runs").join("mnli_increlora_s1"), |l, _| 1 + (l % 3) as i64);
    rows.push(Row {
        id: "mnli_increlora_s1".into(),
        task: "mnli".into(),
        method: "increlora".into(),
        seed: 1,
        swept: vec![],
        status: "finished",
        scores: vec![("m_accuracy", 0.895), ("mm_accuracy", 0.90)],
        params: 330_000,
        run_dir: "runs/mnli_increlora_s1".into(),
    });
    // A failed run: left out everywhere (it would pull TriAdaptLoRA's RTE mean down).
    rows.push(Row {
        id: "rte_triadapt_s3".into(),
        task: "rte".into(),
        method: "triadapt".into(),
        seed: 3,
        swept: vec![],
        status: "failed",
        scores: vec![("accuracy", 0.10)],
        params: 330_000,
        run_dir: String::new(),
    });
    write_runs_csv(&dir, &[], &rows);
    (dir, triadapt_total)
}

const WARMUPS: [i64; 4] = [100, 200, 400, 800];

/// Dev accuracy of a run: best at the second warm-up value, 0.005 apart between seeds.
fn ablation_score(method: &str, w: usize, seed: i64) -> f64 {
    let base = if method == "triadapt" { 0.80 } else { 0.78 };
    base + [0.0, 0.02, 0.01, -0.01][w] + 0.005 * seed as f64
}

const STEPS: i64 = 1010;

/// Writes a curve.csv of 1010 steps: loss decays (0.01 higher per seed), dev metric every 100
/// steps and at the last step (1010, as the training loop's final evaluation), total rank grows
/// from 72 after `warmup` + 10 x seed steps up to 144 (TriAdaptLoRA by 8 every 50 steps,
/// IncreLoRA by 5 every 100), so seeds differ.
fn write_curve(dir: &Path, method: &str, warmup: i64, score: f64, seed: i64) {
    std::fs::create_dir_all(dir).unwrap();
    let (scale, tau, every, by) = if method == "triadapt" { (0.70, 300.0, 50, 8) } else { (0.75, 380.0, 100, 5) };
    let start = warmup + 10 * seed;
    let mut s = String::from("step,loss,lr,dev_metric,total_rank\n");
    for step in 1..=STEPS {
        let loss = scale * (-(step as f64) / tau).exp() + 0.2 + 0.05 * ((step as f64) * 0.7).sin().abs() + 0.01 * seed as f64;
        let dev =
            if step % 100 == 0 || step == STEPS { format!("{}", score - 0.1 * (-(step as f64) / 200.0).exp()) } else { String::new() };
        let rank = if step <= start { 72 } else { (72 + by * ((step - start) / every + 1)).min(144) };
        writeln!(s, "{step},{loss},0.001,{dev},{rank}").unwrap();
    }
    std::fs::write(dir.join("curve.csv"), s).unwrap();
}

/// The RTE warm-up ablation: TriAdaptLoRA swept over method.triadapt.warmup_steps, IncreLoRA over
/// method.increlora.init_warmup (each column empty in the other method's rows), seeds 1-3.
fn ablation_fixture(root: &Path) -> PathBuf {
    let dir = root.join("results").join("rte_warmup");
    let mut rows = Vec::new();
    for method in ["triadapt", "increlora"] {
        for (wi, w) in WARMUPS.iter().enumerate() {
            for seed in 1..=3 {
                let id = format!("{method}_w{w}_s{seed}");
                let score = ablation_score(method, wi, seed);
                write_curve(&dir.join("runs").join(&id), method, *w, score, seed);
                let swept = if method == "triadapt" { vec![w.to_string(), String::new()] } else { vec![String::new(), w.to_string()] };
                rows.push(Row {
                    id: id.clone(),
                    task: "rte".into(),
                    method: method.into(),
                    seed,
                    swept,
                    status: "finished",
                    scores: vec![("accuracy", score)],
                    params: 330_000,
                    run_dir: format!("runs/{id}"),
                });
            }
        }
    }
    write_runs_csv(&dir, &["method.triadapt.warmup_steps", "method.increlora.init_warmup"], &rows);
    dir
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

/// The contents of an SVG's <text> elements, trimmed.
fn svg_texts(path: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(s.contains("<svg"), "{} is not an SVG", path.display());
    s.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').expect("tag end") + 1..];
            body[..body.find("</text>").expect("closed")].trim().to_string()
        })
        .collect()
}

fn assert_texts(path: &Path, needles: &[&str]) {
    let texts = svg_texts(path);
    for needle in needles {
        assert!(texts.iter().any(|t| t.contains(needle)), "{} lacks {needle:?} in its texts {texts:?}", path.display());
    }
}

/// A CSV file as its header and rows (cells as text).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect();
    (header, rows)
}

/// The rows of a CSV file as maps from column name to cell.
fn csv_maps(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let (h, rows) = read_csv(path);
    rows.into_iter().map(|r| h.iter().cloned().zip(r).collect()).collect()
}

/// An SVG's size from its root element.
fn svg_size(path: &Path) -> (u32, u32) {
    let s = std::fs::read_to_string(path).unwrap();
    let attr = |name: &str| -> u32 {
        let at = s.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        s[at..at + s[at..].find('"').unwrap()].parse().unwrap()
    };
    (attr("width"), attr("height"))
}

/// The value of attribute `name` in an SVG element's text.
fn svg_attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&element[at..at + element[at..].find('"')?])
}

/// The opaque markers of one colour in an SVG, as (shape, centre): filled `<circle>`s and
/// filled `<polygon>`s of 3 (triangle) or 4 corners (square or diamond, by whether the first
/// corner is on the centre's column); bands (translucent) are not markers.
fn svg_markers(svg: &str, color: &str) -> Vec<(&'static str, (f64, f64))> {
    let mut out = Vec::new();
    for (tag, rest) in [("circle", svg.split("<circle").skip(1).collect::<Vec<_>>()), ("polygon", svg.split("<polygon").skip(1).collect())]
    {
        for e in rest {
            let e = &e[..e.find("/>").unwrap()];
            if svg_attr(e, "fill") != Some(color) || svg_attr(e, "opacity") != Some("1") {
                continue;
            }
            if tag == "circle" {
                out.push(("circle", (svg_attr(e, "cx").unwrap().parse().unwrap(), svg_attr(e, "cy").unwrap().parse().unwrap())));
                continue;
            }
            let pts: Vec<(f64, f64)> = svg_attr(e, "points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            let n = pts.len() as f64;
            let centre = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
            let shape = match pts.len() {
                3 => "triangle",
                4 if (pts[0].0 - centre.0).abs() < 0.5 => "diamond",
                4 => "square",
                _ => continue,
            };
            out.push((shape, centre));
        }
    }
    out
}

/// The columns `step`, `loss`, `dev_metric`, `total_rank` of a curve.csv, read here.
fn fixture_curve(path: &Path) -> Vec<(f64, f64, Option<f64>, f64)> {
    let (h, rows) = read_csv(path);
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (s, l, d, r) = (col("step"), col("loss"), col("dev_metric"), col("total_rank"));
    rows.iter().map(|x| (x[s].parse().unwrap(), x[l].parse().unwrap(), x[d].parse().ok(), x[r].parse().unwrap())).collect()
}

fn mean_min_max(v: &[f64]) -> (f64, f64, f64) {
    (
        v.iter().sum::<f64>() / v.len() as f64,
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

fn keep_for_demo(files: &[PathBuf]) {
    if let Ok(demo) = std::env::var("TRIADAPT_REPORT_DEMO") {
        let demo = PathBuf::from(demo);
        std::fs::create_dir_all(&demo).unwrap();
        for f in files {
            std::fs::copy(f, demo.join(f.file_name().unwrap())).unwrap();
        }
    }
}

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).args(args).output().expect("run triadapt")
}

#[test]
fn glue_table_means_over_seeds_and_all_avg() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = glue_fixture(tmp.path());
    let runs = Runs::load(&dir).unwrap();
    assert_eq!(runs.skipped, 1, "the failed run is left out");
    let table = report::table::build(&runs, None).unwrap();
    let labels: Vec<&str> = table.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["LoRA", "AdaLoRA", "IncreLoRA", "TriAdaptLoRA"], "the paper's order, TriAdaptLoRA last");
    let tri = table.rows.iter().find(|r| r.method == "triadapt").unwrap();
    // TriAdaptLoRA, seeds 1 and 2 per task (two values a, b: mean (a+b)/2, sample std |a-b|/sqrt 2):
    //   MNLI  m 0.90, 0.92 -> 91.0 ± 1.4; mm 0.91, 0.91 -> 91.0 ± 0.0
    //   SST-2 0.95, 0.96 -> 95.5 ± 0.7;  CoLA 0.70, 0.72 -> 71.0 ± 1.4
    //   QQP   acc 0.90, 0.92 -> 91.0 ± 1.4, F1 0.88, 0.88 -> 88.0 ± 0.0;  QNLI 94.0 ± 0.0
    //   RTE   0.88, 0.86 -> 87.0 ± 1.4 (the failed seed 3 with 0.10 is not counted)
    //   MRPC  0.90, 0.92 -> 91.0 ± 1.4
    //   STS-B Corr per run: (0.92 + 0.90)/2 = 0.91, (0.92 + 0.92)/2 = 0.92 -> 91.5 ± 0.7
    //   All Avg per seed: seed 1 (0.905 + 0.95 + 0.70 + 0.89 + 0.94 + 0.88 + 0.90 + 0.91)/8 = 7.075/8
    //   = 0.884375; seed 2 (0.915 + 0.96 + 0.72 + 0.90 + 0.94 + 0.86 + 0.92 + 0.92)/8 = 7.135/8 =
    //   0.891875 -> mean 0.888125, std 0.0075/sqrt 2 = 0.0053 -> 88.8 ± 0.5 (2)
    match tri.all_avg.expect("all eight tasks present") {
        report::table::AllAvg::Seeds(s) => {
            assert_eq!(s.n, 2);
            assert!((s.mean - 0.888125).abs() < 1e-12 && (s.std.unwrap() - 0.0075 / 2f64.sqrt()).abs() < 1e-12, "{s:?}");
        }
        other => panic!("every task has seeds 1 and 2: {other:?}"),
    }
    assert_eq!(
        tri.cells,
        [
            "TriAdaptLoRA",
            "0.33M",
            "91.0 ± 1.4 / 91.0 ± 0.0 (2)",
            "95.5 ± 0.7 (2)",
            "71.0 ± 1.4 (2)",
            "91.0 ± 1.4 / 88.0 ± 0.0 (2)",
            "94.0 ± 0.0 (2)",
            "87.0 ± 1.4 (2)",
            "91.0 ± 1.4 (2)",
            "91.5 ± 0.7 (2)",
            "88.8 ± 0.5 (2)"
        ]
    );
    // LoRA: every score 0.01 lower -> All Avg 0.878125.
    let lora = table.rows.iter().find(|r| r.method == "lora").unwrap();
    assert!((lora.all_avg.unwrap().mean() - 0.878125).abs() < 1e-12);
    assert_eq!(lora.cells[1], "0.34M");
    // AdaLoRA: MNLI and RTE only, one run each -> no spread, "-" elsewhere, no All Avg.
    let ada = table.rows.iter().find(|r| r.method == "adalora").unwrap();
    assert_eq!(ada.cells, ["AdaLoRA", "0.32M", "89.0 / 90.0 (1)", "-", "-", "-", "-", "85.0 (1)", "-", "-", "-"]);
    assert!(ada.all_avg.is_none());
    // No run folder names a rank setting: one block, by the total rank budget.
    assert!(table.rows.iter().all(|r| r.budget == report::budget::Budget::Total(144.0)));

    // The command: prints the markdown and writes table.md and table.csv into --out.
    let out = tmp.path().join("tables");
    let o = triadapt(&["table", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(stdout.contains("| Method | #Params | MNLI (m/mm) | SST-2 (Acc) | CoLA (Mcc) | QQP (Acc/F1) | QNLI (Acc) | RTE (Acc) | MRPC (Acc) | STS-B (Corr) | All Avg |"), "{stdout}");
    assert!(stdout.contains("| **rank budget 144** |  |"), "{stdout}");
    assert!(stdout.contains("| TriAdaptLoRA | 0.33M | 91.0 ± 1.4 / 91.0 ± 0.0 (2) | 95.5 ± 0.7 (2) |"), "{stdout}");
    assert!(stdout.contains("n = 1–2 by cell; n = 1: a single run, no spread"), "{stdout}");
    assert!(!stdout.contains("runs per cell"), "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("table.md")).unwrap(), stdout);
    // table.csv: the numbers behind each cell (x100), e.g. TriAdaptLoRA's RTE and All Avg.
    let csv = csv_maps(&out.join("table.csv"));
    let row = |method: &str, score: &str| {
        csv.iter().find(|r| r["method"] == method && r["score"] == score).unwrap_or_else(|| panic!("{method} {score}: {csv:?}"))
    };
    let rte = row("triadapt", "rte");
    assert_eq!(
        (rte["block"].as_str(), rte["r"].as_str(), rte["averaged"].as_str(), rte["n"].as_str()),
        ("rank budget 144", "", "runs", "2")
    );
    for (col, v) in [("mean", 87.0), ("std", 2f64.sqrt()), ("min", 86.0), ("max", 88.0)] {
        assert!(close(rte[col].parse().unwrap(), v), "{col}: {rte:?}");
    }
    let avg = row("triadapt", "all_avg");
    assert_eq!((avg["averaged"].as_str(), avg["n"].as_str()), ("seeds", "2"));
    assert!(
        close(avg["mean"].parse().unwrap(), 88.8125)
            && close(avg["min"].parse().unwrap(), 88.4375)
            && close(avg["max"].parse().unwrap(), 89.1875),
        "{avg:?}"
    );
    assert_eq!(row("adalora", "rte")["std"], "", "one run: no standard deviation");
    // Default destination: the results directory.
    let o = triadapt(&["table", dir.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(dir.join("table.md").is_file() && dir.join("table.csv").is_file());
    keep_for_demo(&[out.join("table.md"), out.join("table.csv")]);
}

/// A GLUE results directory at two reference ranks, as a sweep writes it: TriAdaptLoRA's rank
/// is a swept column (`method.triadapt.ref_rank` 2 and 8, also swept over
/// `method.triadapt.interval`: 100 everywhere, 50 on RTE at r = 2), LoRA's is in its run
/// folders' config.yaml only (`method.lora.rank`), full fine-tuning has none. Every metric of a
/// run is `base + 0.01 (r = 8) + 0.002 x seed`: TriAdaptLoRA base 0.80 (0.85 at interval 50),
/// LoRA 0.78, full 0.82; seeds 1-3, except LoRA's MNLI (seeds 1 and 2) and full (seed 1).
fn budget_table_fixture(root: &Path) -> PathBuf {
    let dir = root.join("results").join("glue_budgets");
    let mut csv = String::from(
        "run_id,name,task,method,seed,method.triadapt.ref_rank,method.triadapt.interval,status,error,main_metric,best_score,best_step",
    );
    for m in METRICS {
        write!(csv, ",{m}").unwrap();
    }
    csv.push_str(",trainable_params,adapter_params,head_params,total_rank,rank_budget,wall_seconds,run_dir\n");
    let mut row = |method: &str, r: i64, interval: i64, task: &str, seed: i64, base: f64| {
        let id = format!("{task}_{method}_r{r}_i{interval}_s{seed}");
        let v = base + if r == 8 { 0.01 } else { 0.0 } + 0.002 * seed as f64;
        let (ref_rank, int) = if method == "triadapt" { (r.to_string(), interval.to_string()) } else { (String::new(), String::new()) };
        let run_dir = if method == "lora" {
            let run = dir.join("runs").join(&id);
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(
                run.join("config.yaml"),
                format!("task: {task}\nmethod:\n  name: lora\n  lora:\n    rank: {r}\n  triadapt:\n    ref_rank: 4\n"),
            )
            .unwrap();
            format!("runs/{id}")
        } else {
            String::new()
        };
        let (total, budget) = if method == "full" { (String::new(), String::new()) } else { ((r * 72).to_string(), (r * 72).to_string()) };
        write!(csv, "{id},b,{task},{method},{seed},{ref_rank},{int},finished,,{},{v},100", main_of(task)).unwrap();
        for _ in METRICS {
            write!(csv, ",{v}").unwrap();
        }
        writeln!(csv, ",1000,{},1538,{total},{budget},1.0,{run_dir}", if method == "full" { 184_000_000 } else { 165_888 * r }).unwrap();
    };
    for task in TASKS {
        row("full", 0, 0, task, 1, 0.82);
        for r in [2, 8] {
            for seed in 1..=3 {
                row("triadapt", r, 100, task, seed, 0.80);
                if !(task == "mnli" && seed == 3) {
                    row("lora", r, 0, task, seed, 0.78);
                }
            }
        }
    }
    for seed in 1..=3 {
        row("triadapt", 2, 50, "rte", seed, 0.85);
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("runs.csv"), csv).unwrap();
    dir
}

#[test]
fn glue_table_one_block_per_reference_rank_with_published_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = budget_table_fixture(tmp.path());
    // Made-up numbers, for this test only.
    let reference = tmp.path().join("published.csv");
    std::fs::write(&reference, "# made up for this test\nmethod,budget,task,score\nTriAdaptLoRA,2,rte,80.0\nTriAdaptLoRA,2,mnli_m,81.0\ntriadapt,2,all_avg,80.0\nLoRA,8,stsb,79.0\nAdaLoRA,2,rte,70.0\n").unwrap();
    let out = tmp.path().join("tables");
    let o = triadapt(&["table", dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--reference", reference.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Method") && !l.starts_with("| :--")).collect();
    // Blocks: no budget (full), r = 2, r = 8; in a block LoRA before TriAdaptLoRA, settings by
    // value. Cells by hand: seeds 1-3 give base + 0.002, 0.004, 0.006: mean base + 0.004, sample
    // std 0.002 -> "80.4 ± 0.2 (3)"; LoRA's MNLI seeds 1-2: 0.782, 0.784 -> 78.3 ± 0.1 (2).
    // LoRA's tasks do not all have the same seeds: All Avg of the cell means,
    // (0.783 + 7 x 0.784) / 8 = 0.783875 -> 78.4†. Full: one run, 0.822.
    let c = |v: &str, n: usize| format!("{v} ({n})");
    // TriAdaptLoRA: every cell and the All Avg over seeds (each seed's scores are all equal).
    let tri = |v: &str| -> Vec<String> {
        let x = c(&format!("{v} ± 0.2"), 3);
        let pair = format!("{v} ± 0.2 / {v} ± 0.2 (3)");
        vec![pair.clone(), x.clone(), x.clone(), pair, x.clone(), x.clone(), x.clone(), x.clone(), x]
    };
    let lora = |v: &str, mnli: &str, avg: &str| -> Vec<String> {
        let x = c(&format!("{v} ± 0.2"), 3);
        vec![
            format!("{mnli} ± 0.1 / {mnli} ± 0.1 (2)"),
            x.clone(),
            x.clone(),
            format!("{v} ± 0.2 / {v} ± 0.2 (3)"),
            x.clone(),
            x.clone(),
            x.clone(),
            x,
            avg.to_string(),
        ]
    };
    let join = |label: &str, params: &str, cells: Vec<String>| format!("| {label} | {params} | {} |", cells.join(" | "));
    let expect = vec![
        "| **no rank budget** |  |  |  |  |  |  |  |  |  |  |".to_string(),
        join(
            "Full FT",
            "184M",
            vec![
                "82.2 / 82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 / 82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 (1)".into(),
                "82.2 (1)".into(),
            ],
        ),
        "| **r = 2** |  |  |  |  |  |  |  |  |  |  |".to_string(),
        join("LoRA", "0.33M", lora("78.4", "78.3", "78.4†")),
        join(
            "TriAdaptLoRA (interval=50)",
            "0.33M",
            vec!["-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "85.4 ± 0.2 (3)".into(), "-".into(), "-".into(), "-".into()],
        ),
        "| ↳ published |  | 81.0/- | - | - | - | - | 80.0 | - | - | 80.0 |".to_string(),
        "| ↳ ours − published |  | -/- | - | - | - | - | +5.4 | - | - | - |".to_string(),
        join("TriAdaptLoRA (interval=100)", "0.33M", tri("80.4")),
        "| ↳ published |  | 81.0/- | - | - | - | - | 80.0 | - | - | 80.0 |".to_string(),
        "| ↳ ours − published |  | -0.6/- | - | - | - | - | +0.4 | - | - | +0.4 |".to_string(),
        "| **r = 8** |  |  |  |  |  |  |  |  |  |  |".to_string(),
        join("LoRA", "1.33M", lora("79.4", "79.3", "79.4†")),
        "| ↳ published |  | - | - | - | - | - | - | - | 79.0 | - |".to_string(),
        "| ↳ ours − published |  | - | - | - | - | - | - | - | +0.4 | - |".to_string(),
        join("TriAdaptLoRA (interval=100)", "1.33M", tri("81.4")),
    ];
    assert_eq!(lines, expect.iter().map(String::as_str).collect::<Vec<_>>(), "{md}");
    for needle in [
        "n = 1–3 by cell; n = 1: a single run, no spread",
        "One block per rank budget: the reference rank r",
        "†: the tasks' runs do not have the same seeds, so the mean of the cell means",
        "per seed, then mean ± std over the seeds",
        "Published numbers without a row here: AdaLoRA r = 2.",
    ] {
        assert!(md.contains(needle), "{needle:?} not in {md}");
    }
    // table.csv: n, mean, std, min, max per cell (x100), the published number and difference.
    let csv = csv_maps(&out.join("table.csv"));
    let find = |r: &str, label: &str, score: &str| {
        csv.iter().find(|x| x["r"] == r && x["label"] == label && x["score"] == score).unwrap_or_else(|| panic!("{r} {label} {score}"))
    };
    let rte = find("2", "TriAdaptLoRA (interval=100)", "rte");
    assert_eq!(
        (rte["block"].as_str(), rte["method"].as_str(), rte["setting"].as_str(), rte["averaged"].as_str(), rte["n"].as_str()),
        ("r = 2", "triadapt", "method.triadapt.interval=100", "runs", "3")
    );
    for (col, v) in [("mean", 80.4), ("std", 0.2), ("min", 80.2), ("max", 80.6), ("published", 80.0), ("difference", 0.4)] {
        assert!((rte[col].parse::<f64>().unwrap() - v).abs() < 1e-9, "{col}: {rte:?}");
    }
    let avg = find("2", "LoRA", "all_avg");
    assert_eq!((avg["averaged"].as_str(), avg["n"].as_str(), avg["std"].as_str()), ("cell means", "", ""));
    assert!((avg["mean"].parse::<f64>().unwrap() - 78.3875).abs() < 1e-9, "{avg:?}");
    let full = find("", "Full FT", "all_avg");
    assert_eq!(
        (full["block"].as_str(), full["averaged"].as_str(), full["n"].as_str(), full["std"].as_str()),
        ("no rank budget", "seeds", "1", "")
    );

    // A malformed reference file: the error names the file and the line.
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "method,budget,task,score\nlora,2,rte,80.0\nlora,2,rte,eighty\n").unwrap();
    let o = triadapt(&["table", dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--reference", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(&format!("{}, line 3", bad.display())) && e.contains("`score` \"eighty\""), "{e}");
}

#[test]
fn heatmap_one_panel_per_method_with_shared_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, tri_total) = glue_fixture(tmp.path());
    let runs = Runs::load(&dir).unwrap();
    let maps = report::heatmap::build(&runs, &HeatmapOptions::default()).unwrap();
    assert_eq!(maps.len(), 1, "only MNLI runs have rank patterns, all at budget 144");
    let h = &maps[0];
    assert_eq!((h.task.as_str(), h.budget), ("mnli", 144.0));
    assert_eq!((h.layers, h.matrices.len()), (12, 6));
    assert_eq!(h.matrices, ["Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2"]);
    let methods: Vec<&str> = h.panels.iter().map(|p| p.method.as_str()).collect();
    assert_eq!(methods, ["triadapt", "adalora", "increlora"], "LoRA rows have no run folder");
    // TriAdaptLoRA: seed 2 has the higher best_score (0.92 > 0.90).
    assert_eq!(h.panels[0].seed, Some(2));
    assert_eq!(h.panels[0].total_rank(), tri_total);
    assert_eq!(h.panels[0].ranks[1][2], Some(1 + (1 + 2 * 2) % 4));
    // One scale over all panels: AdaLoRA's zeros to the maximum rank 5.
    assert_eq!((h.min, h.max), (0, 5));

    let out = tmp.path().join("plots");
    let o = triadapt(&["heatmap", dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--task", "mnli"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = out.join("glue").join("heatmap_mnli_budget144");
    let file = |ext: &str| PathBuf::from(format!("{}{ext}", stem.display()));
    let (png, svg) = (file(".png"), file(".svg"));
    let expected: String = [".png", ".svg", ".csv", ".runs.csv"].iter().map(|e| format!("{}\n", file(e).display())).collect();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), expected);
    // 3 panels of 12 layers x 6 matrices: width 110 + 12 * 54 + 160 = 918,
    // height 70 + 3 * (34 + 6 * 36 + 24) + 30 + 10 = 932.
    assert_eq!(png_size(&png), (918, 932));
    assert_eq!(svg_size(&svg), (918, 932));
    assert_eq!(report::heatmap::figure_size(3, 12, 6), (918, 932));
    keep_for_demo(&[png.clone(), svg.clone()]);
    let total = format!("TriAdaptLoRA (dev matched accuracy 92.00%, total rank {tri_total})");
    assert_texts(
        &svg,
        &[
            "MNLI, rank budget 144 (2 per matrix): final rank of each adapted matrix",
            &total,
            "AdaLoRA (",
            "IncreLoRA (",
            "Wf1",
            "layer index",
            "final rank",
            "weight matrix",
        ],
    );
    // Run ids and seeds are in the sidecar, not in the figure.
    let texts = svg_texts(&svg);
    for id in ["mnli_triadapt_s2", "mnli_adalora_s1", "mnli_increlora_s1"] {
        assert!(!texts.iter().any(|t| t.contains(id)), "{id} in the figure");
    }
    assert!(!texts.iter().any(|t| t.contains("seed")), "{texts:?}");
    let side = csv_maps(&file(".runs.csv"));
    let ids: Vec<(&str, &str, &str)> = side.iter().map(|r| (r["method"].as_str(), r["run_id"].as_str(), r["seed"].as_str())).collect();
    assert_eq!(ids, [("triadapt", "mnli_triadapt_s2", "2"), ("adalora", "mnli_adalora_s1", "1"), ("increlora", "mnli_increlora_s1", "1")]);
    // The cells: the rank_pattern.json of each run, read here.
    let cells = csv_maps(&file(".csv"));
    assert_eq!(cells.len(), 3 * 72);
    for (method, id) in [("triadapt", "mnli_triadapt_s2"), ("adalora", "mnli_adalora_s1"), ("increlora", "mnli_increlora_s1")] {
        let pattern: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("runs").join(id).join("rank_pattern.json")).unwrap()).unwrap();
        for c in cells.iter().filter(|c| c["method"] == method) {
            let layer: usize = c["layer"].parse().unwrap();
            let key = format!("deberta.encoder.layer.{}.{}", layer - 1, c["module"]);
            assert_eq!(c["rank"], pattern[&key].to_string(), "{method} {key}");
        }
    }
    // Every cell's value is written: 3 panels x 72 cells, plus layer ticks 1-12 under each panel
    // and the colour bar's ticks 0-5.
    let small = texts.iter().filter(|t| t.parse::<i64>().is_ok_and(|v| (0..=5).contains(&v))).count();
    let ticks = 3 * 5 + 6;
    assert_eq!(small, 3 * 72 + ticks, "value labels");
    // A task without rank patterns is an error naming the task.
    let opts = HeatmapOptions { task: Some("rte".into()), ..Default::default() };
    let e = report::heatmap::build(&runs, &opts).unwrap_err().to_string();
    assert!(e.contains("rte") && e.contains("rank_pattern.json"), "{e}");
}

/// RTE at two rank budgets (TriAdaptLoRA and IncreLoRA with rank_budget 24 and 48, LoRA with
/// none: its total rank), seeds 1 and 2, 2 layers. Ranks of a run: `fixture_rank`. Scores: at
/// budget 24 seed 2 is best, at 48 seed 1.
fn budget_fixture(root: &Path) -> PathBuf {
    let dir = root.join("results").join("rte_budgets");
    let mut csv = String::from("run_id,name,task,method,seed,method.triadapt.ref_rank,status,error,main_metric,best_score,best_step,accuracy,trainable_params,total_rank,rank_budget,wall_seconds,run_dir\n");
    for budget in [24i64, 48] {
        for method in ["lora", "increlora", "triadapt"] {
            for seed in [1i64, 2] {
                let id = format!("{method}_b{budget}_s{seed}");
                let run = dir.join("runs").join(&id);
                std::fs::create_dir_all(&run).unwrap();
                let mut map = serde_json::Map::new();
                for l in 0..2 {
                    for (j, suffix) in SUFFIXES.iter().enumerate() {
                        map.insert(format!("deberta.encoder.layer.{l}.{suffix}"), fixture_rank(method, budget, seed, l, j).into());
                    }
                }
                std::fs::write(run.join("rank_pattern.json"), serde_json::to_string(&map).unwrap()).unwrap();
                let best_seed = if budget == 24 { 2 } else { 1 };
                let score = if seed == best_seed { 0.95 } else { 0.90 };
                let rank_budget = if method == "lora" { String::new() } else { budget.to_string() };
                let ref_rank = if method == "triadapt" { (budget / 12).to_string() } else { String::new() };
                writeln!(csv, "{id},b,rte,{method},{seed},{ref_rank},finished,,accuracy,{score},100,{score},1000,{budget},{rank_budget},1.0,runs/{id}").unwrap();
            }
        }
    }
    std::fs::write(dir.join("runs.csv"), csv).unwrap();
    dir
}

/// The fixture's rank of matrix `j` of layer `l`: budget / 12 on average (LoRA exactly that),
/// moved by the seed for the adaptive methods so that every run's pattern differs.
fn fixture_rank(method: &str, budget: i64, seed: i64, l: usize, j: usize) -> i64 {
    let r = budget / 12;
    if method == "lora" {
        return r;
    }
    let shift = if (l * 6 + j).is_multiple_of(2) { seed } else { -seed };
    r + if method == "triadapt" { shift } else { -shift }
}

#[test]
fn one_heatmap_per_rank_budget_with_run_ids_in_the_sidecar() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = budget_fixture(tmp.path());
    let out = tmp.path().join("plots");
    let o = triadapt(&["heatmap", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let figs = out.join("rte_budgets");
    let mut pngs: Vec<String> = std::fs::read_dir(&figs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    pngs.sort();
    assert_eq!(pngs, ["heatmap_rte_budget24.png", "heatmap_rte_budget48.png"], "one heatmap per budget");
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 8, "png, svg, csv, runs.csv per budget: {stdout}");
    for budget in [24i64, 48] {
        let best_seed = if budget == 24 { 2 } else { 1 };
        let stem = figs.join(format!("heatmap_rte_budget{budget}"));
        let file = |ext: &str| PathBuf::from(format!("{}{ext}", stem.display()));
        // The runs shown: each method's best run at this budget, never a run of the other one.
        let runs = csv_maps(&file(".runs.csv"));
        let shown: Vec<(String, String)> = runs.iter().map(|r| (r["method"].clone(), r["run_id"].clone())).collect();
        let expect: Vec<(String, String)> =
            ["triadapt", "increlora", "lora"].iter().map(|m| (m.to_string(), format!("{m}_b{budget}_s{best_seed}"))).collect();
        assert_eq!(shown, expect, "budget {budget}: TriAdaptLoRA first, as in every figure");
        for r in &runs {
            assert_eq!(r["rank_budget"], budget.to_string());
            assert_eq!(r["seed"], best_seed.to_string());
            assert_eq!(r["runs_at_budget"], "2");
        }
        // The cells are that run's ranks.
        for c in csv_maps(&file(".csv")) {
            let (l, j) = (c["layer"].parse::<usize>().unwrap() - 1, SUFFIXES.iter().position(|s| *s == c["module"]).unwrap());
            assert_eq!(c["rank"], fixture_rank(&c["method"], budget, best_seed, l, j).to_string(), "{c:?}");
            assert_eq!(c["rank_budget"], budget.to_string());
        }
        // The caption says the budget and names no run.
        let svg = file(".svg");
        let title = format!("RTE, rank budget {budget} ({} per matrix): final rank of each adapted matrix", budget / 12);
        let caption = format!("TriAdaptLoRA (dev accuracy 95.00%, total rank {budget})");
        assert_texts(
            &svg,
            &[&title, &caption, "IncreLoRA (", "LoRA (dev accuracy 95.00%", "per method its run with the highest dev score"],
        );
        let texts = svg_texts(&svg);
        assert!(!texts.iter().any(|t| t.contains("_b24_") || t.contains("_b48_") || t.contains("seed")), "{texts:?}");
        let order: Vec<usize> =
            ["TriAdaptLoRA (", "IncreLoRA (", "LoRA ("].iter().map(|m| texts.iter().position(|t| t.starts_with(m)).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "panel order {order:?}");
    }
    // --budget: that budget only; an unknown one names the budgets there are.
    let only = tmp.path().join("only");
    let o = triadapt(&["heatmap", dir.to_str().unwrap(), "--out", only.to_str().unwrap(), "--budget", "48"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> =
        std::fs::read_dir(only.join("rte_budgets")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.starts_with("heatmap_rte_budget48")) && names.len() == 4, "{names:?}");
    let o = triadapt(&["heatmap", dir.to_str().unwrap(), "--out", only.to_str().unwrap(), "--budget", "7"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--budget 7") && e.contains("24, 48"), "{e}");
    // Size and resolution: --width/--height set the layout (the SVG), --scale the PNG's pixels.
    let sized = tmp.path().join("sized");
    let o = triadapt(&[
        "heatmap",
        dir.to_str().unwrap(),
        "--out",
        sized.to_str().unwrap(),
        "--budget",
        "24",
        "--width",
        "500",
        "--height",
        "600",
        "--scale",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = sized.join("rte_budgets").join("heatmap_rte_budget24");
    // Cells: (500 - 270) / 2 layers = 115 wide; (600 - 110 - 3 * 58) / 18 rows = 17 high, so
    // the figure is 110 + 2 * 115 + 160 = 500 by 70 + 3 * (34 + 6 * 17 + 24) + 40 = 590.
    assert_eq!(svg_size(&PathBuf::from(format!("{}.svg", stem.display()))), (500, 590));
    assert_eq!(png_size(&PathBuf::from(format!("{}.png", stem.display()))), (1000, 1180));
    for (args, needle) in [(&["--width", "100"][..], "--width 100"), (&["--scale", "0"][..], "--scale 0")] {
        let mut all = vec!["heatmap", dir.to_str().unwrap(), "--out", sized.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = triadapt(&all);
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains(needle), "{args:?}");
    }
}

#[test]
fn ablation_rank_growth_and_training_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ablation_fixture(tmp.path());
    let runs = Runs::load(&dir).unwrap();
    assert_eq!(runs.swept, ["method.triadapt.warmup_steps", "method.increlora.init_warmup"]);
    // The default knob joins the two per-method warm-up columns.
    let keys = vec!["method.triadapt.warmup_steps".to_string(), "method.increlora.init_warmup".to_string()];
    let a = report::curves::build_ablation(&runs, "rte", &keys, "best_score", &Default::default()).unwrap().unwrap();
    assert_eq!(a.x_label, "warm-up steps t_w");
    assert_eq!(a.y_label, "dev accuracy (%)");
    let labels: Vec<&str> = a.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["TriAdaptLoRA", "IncreLoRA"], "TriAdaptLoRA first, as in the heatmap");
    let tri = &a.series[0];
    // Few numeric values: sorted and evenly spaced, a tick at each.
    assert_eq!(a.categories.as_deref(), Some(&["100".to_string(), "200".into(), "400".into(), "800".into()][..]));
    let xs: Vec<(f64, &str)> = tri.points.iter().map(|p| (p.x, p.x_text.as_str())).collect();
    assert_eq!(xs, [(0.0, "100"), (1.0, "200"), (2.0, "400"), (3.0, "800")]);
    // TriAdaptLoRA at t_w = 200 (index 1): seeds 1-3 score 0.80 + 0.02 + 0.005 s, i.e. 0.825,
    // 0.830, 0.835 -> mean 83.0 %, min 82.5 %, max 83.5 %, std 0.5 %.
    let p = &tri.points[1];
    assert_eq!(p.n, 3);
    assert!((p.mean - 83.0).abs() < 1e-9 && (p.min - 82.5).abs() < 1e-9 && (p.max - 83.5).abs() < 1e-9, "{p:?}");
    assert!((p.std - 0.5).abs() < 1e-9, "{p:?}");

    let out = tmp.path().join("plots");
    let o = triadapt(&["plot", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let figs = out.join("rte_warmup");
    // All runs have rank budget 144: one rank-growth and one training figure, for that budget.
    let expect =
        [("ablation_rte_warmup_steps", (900, 620)), ("rank_growth_rte_budget144", (900, 620)), ("training_rte_budget144", (900, 860))];
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3 * 4, "png, svg, csv and runs.csv per figure: {stdout}");
    let mut kept = Vec::new();
    for (stem, size) in expect {
        let png = figs.join(format!("{stem}.png"));
        assert_eq!(png_size(&png), size, "{stem}");
        for ext in ["png", "svg", "csv", "runs.csv"] {
            assert!(stdout.contains(&figs.join(format!("{stem}.{ext}")).display().to_string()), "{stem}.{ext}: {stdout}");
        }
        kept.push(png);
        kept.push(figs.join(format!("{stem}.svg")));
    }
    keep_for_demo(&kept);
    let setting_note = "mean of 3 seeds per method, band: min–max; setting with the best mean dev score";
    assert_texts(
        &figs.join("ablation_rte_warmup_steps.svg"),
        &[
            "RTE: dev accuracy vs warm-up steps t_w",
            "warm-up steps t_w",
            "dev accuracy (%)",
            "TriAdaptLoRA",
            "IncreLoRA",
            "mean over seeds (3 runs per point)",
        ],
    );
    assert_texts(
        &figs.join("rank_growth_rte_budget144.svg"),
        &[
            "RTE, rank budget 144: total rank during training",
            "total rank (sum over adapted matrices)",
            "training step",
            "rank budget 144",
            setting_note,
        ],
    );
    assert_texts(
        &figs.join("training_rte_budget144.svg"),
        &[
            "RTE, rank budget 144: training loss and dev accuracy",
            "training loss",
            "dev accuracy (%)",
            "moving mean over 20 steps",
            setting_note,
        ],
    );
    // Each method's line is its best setting (t_w = 200 for both: the highest mean score),
    // named in the one legend, TriAdaptLoRA first; same colours in every figure.
    for stem in ["ablation_rte_warmup_steps", "rank_growth_rte_budget144", "training_rte_budget144"] {
        let svg = figs.join(format!("{stem}.svg"));
        let texts = svg_texts(&svg);
        let (tri, incre) = if stem.starts_with("ablation") {
            ("TriAdaptLoRA", "IncreLoRA")
        } else {
            ("TriAdaptLoRA, warmup_steps=200", "IncreLoRA, init_warmup=200")
        };
        let at = |l: &str| texts.iter().position(|t| t == l).unwrap_or_else(|| panic!("{stem}: no legend entry {l:?} in {texts:?}"));
        assert!(at(tri) < at(incre), "{stem}: legend order");
        assert_eq!(texts.iter().filter(|t| t.contains("TriAdaptLoRA")).count(), 1, "{stem}: one legend");
        let body = std::fs::read_to_string(&svg).unwrap();
        assert!(body.contains("stroke=\"#D62728\"") && body.contains("stroke=\"#2CA02C\""), "{stem}: TriAdaptLoRA red, IncreLoRA green");
        assert!(!texts.iter().any(|t| t.contains("_w200_") || t.contains("_w100_")), "{stem}: a run id in the figure");
    }

    // The sidecars: the numbers drawn equal the means over the seeds' curve.csv, computed here.
    type Curve = Vec<(f64, f64, Option<f64>, f64)>;
    let curves: Vec<(&str, Vec<Curve>)> = ["triadapt", "increlora"]
        .iter()
        .map(|m| (*m, (1..=3).map(|s| fixture_curve(&dir.join("runs").join(format!("{m}_w200_s{s}")).join("curve.csv"))).collect()))
        .collect();
    let label = |m: &str| if m == "triadapt" { "TriAdaptLoRA, warmup_steps=200" } else { "IncreLoRA, init_warmup=200" };
    // Rank growth: one row per corner of the mean, min and max; each value holds until the next row.
    let rank = csv_maps(&figs.join("rank_growth_rte_budget144.csv"));
    for (m, runs) in &curves {
        let rows: Vec<_> = rank.iter().filter(|r| r["method"] == *m).collect();
        assert!(rows.iter().all(|r| r["series"] == label(m) && r["panel"] == "rank" && r["rank_budget"] == "144"));
        let at = |step: usize| mean_min_max(&runs.iter().map(|c| c[step - 1].3).collect::<Vec<_>>());
        let steps: Vec<usize> = rows.iter().map(|r| r["step"].parse().unwrap()).collect();
        let mut row = 0;
        for step in 1..=STEPS as usize {
            if row + 1 < steps.len() && steps[row + 1] == step {
                row += 1;
            }
            let (mean, min, max) = at(step);
            let r = rows[row];
            assert!(
                close(r["mean"].parse().unwrap(), mean) && close(r["min"].parse().unwrap(), min) && close(r["max"].parse().unwrap(), max),
                "{m} step {step}: {r:?} vs {mean} {min} {max}"
            );
            assert_eq!(r["n"], "3");
        }
        assert_eq!((steps[0], *steps.last().unwrap()), (1, STEPS as usize));
    }
    // TriAdaptLoRA by hand at step 300: seeds grow from 72 after 210, 220, 230 steps by 8 every
    // 50: 72 + 8 * (90/50 + 1) = 88, 72 + 8 * (80/50 + 1) = 88, 72 + 8 * (70/50 + 1) = 88; at step
    // 261: 72 + 8 * 2 = 88, 72 + 8 * 1 = 80, 80 -> mean 82.67, min 80, max 88.
    let row_at = |step: usize| rank.iter().rfind(|r| r["method"] == "triadapt" && r["step"].parse::<usize>().unwrap() <= step).unwrap();
    let r = row_at(261);
    assert!(close(r["mean"].parse().unwrap(), 248.0 / 3.0) && r["min"] == "80" && r["max"] == "88", "{r:?}");
    // Training: the loss's moving mean over 20 steps per run, then the mean over the seeds; the
    // dev metric (percent) at the evaluations, the final one at 1010 in place of 1000.
    let training = csv_maps(&figs.join("training_rte_budget144.csv"));
    for (m, runs) in &curves {
        let smoothed: Vec<Vec<f64>> = runs
            .iter()
            .map(|c| {
                (0..c.len())
                    .map(|i| {
                        let lo = i.saturating_sub(19);
                        c[lo..=i].iter().map(|x| x.1).sum::<f64>() / (i - lo + 1) as f64
                    })
                    .collect()
            })
            .collect();
        let loss: Vec<_> = training.iter().filter(|r| r["method"] == *m && r["panel"] == "loss").collect();
        assert!(loss.len() > 500 && loss.len() <= 1501, "{}", loss.len());
        for r in &loss {
            let step: usize = r["step"].parse().unwrap();
            let (mean, min, max) = mean_min_max(&smoothed.iter().map(|s| s[step - 1]).collect::<Vec<_>>());
            assert!(
                close(r["mean"].parse().unwrap(), mean) && close(r["min"].parse().unwrap(), min) && close(r["max"].parse().unwrap(), max),
                "{m} loss at {step}"
            );
            assert!(r["min"].parse::<f64>().unwrap() > 0.0);
        }
        let dev: Vec<_> = training.iter().filter(|r| r["method"] == *m && r["panel"] == "dev").collect();
        let steps: Vec<usize> = dev.iter().map(|r| r["step"].parse().unwrap()).collect();
        assert_eq!(steps, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1010], "{m}: the final evaluation once, in the last one's place");
        for r in &dev {
            let step: usize = r["step"].parse().unwrap();
            let (mean, min, max) = mean_min_max(&runs.iter().map(|c| c[step - 1].2.unwrap() * 100.0).collect::<Vec<_>>());
            assert!(
                close(r["mean"].parse().unwrap(), mean) && close(r["min"].parse().unwrap(), min) && close(r["max"].parse().unwrap(), max),
                "{m} dev at {step}"
            );
        }
    }
    // Markers: one per drawn evaluation (10 per method) and one in the legend, TriAdaptLoRA's
    // circles, IncreLoRA's triangles; the loss axis starts at zero.
    let training_svg = std::fs::read_to_string(figs.join("training_rte_budget144.svg")).unwrap();
    assert_eq!(svg_markers(&training_svg, "#D62728").len(), 11, "TriAdaptLoRA circles");
    assert_eq!(svg_markers(&training_svg, "#2CA02C").len(), 11, "IncreLoRA triangles");
    assert!(
        svg_markers(&training_svg, "#D62728").iter().all(|m| m.0 == "circle")
            && svg_markers(&training_svg, "#2CA02C").iter().all(|m| m.0 == "triangle")
    );
    assert!(
        !svg_texts(&figs.join("training_rte_budget144.svg")).iter().any(|t| t.parse::<f64>().is_ok_and(|v| v < 0.0)),
        "a negative tick"
    );
    // The runs behind each line, with their ids.
    for stem in ["rank_growth_rte_budget144", "training_rte_budget144"] {
        let side = csv_maps(&figs.join(format!("{stem}.runs.csv")));
        let ids: Vec<&str> = side.iter().map(|r| r["run_id"].as_str()).collect();
        assert_eq!(
            ids,
            ["triadapt_w200_s1", "triadapt_w200_s2", "triadapt_w200_s3", "increlora_w200_s1", "increlora_w200_s2", "increlora_w200_s3"],
            "{stem}"
        );
    }
    // The ablation's numbers: TriAdaptLoRA at 200 as computed above from runs.csv.
    let abl = csv_maps(&figs.join("ablation_rte_warmup_steps.csv"));
    let r = abl.iter().find(|r| r["method"] == "triadapt" && r["x"] == "200").unwrap();
    assert_eq!((r["n"].as_str(), r["series"].as_str()), ("3", "TriAdaptLoRA"));
    assert!(close(r["mean"].parse().unwrap(), 83.0) && close(r["min"].parse().unwrap(), 82.5) && close(r["max"].parse().unwrap(), 83.5));
    let runs_at: Vec<String> = csv_maps(&figs.join("ablation_rte_warmup_steps.runs.csv"))
        .into_iter()
        .filter(|r| r["method"] == "triadapt" && r["x"] == "200")
        .map(|r| r["run_id"].clone())
        .collect();
    assert_eq!(runs_at, ["triadapt_w200_s1", "triadapt_w200_s2", "triadapt_w200_s3"]);

    // --width/--height/--scale for every figure of the command.
    let sized = tmp.path().join("sized");
    let o =
        triadapt(&["plot", dir.to_str().unwrap(), "--out", sized.to_str().unwrap(), "--width", "450", "--height", "400", "--scale", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (stem, _) in expect {
        let base = sized.join("rte_warmup").join(stem);
        assert_eq!(svg_size(&PathBuf::from(format!("{}.svg", base.display()))), (450, 400), "{stem}");
        assert_eq!(png_size(&PathBuf::from(format!("{}.png", base.display()))), (900, 800), "{stem}");
    }

    // --x and --metric: a named column; an unknown one is an error naming the swept keys.
    let out2 = tmp.path().join("plots2");
    let o = triadapt(&[
        "plot",
        dir.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--x",
        "method.triadapt.warmup_steps",
        "--metric",
        "accuracy",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = out2.join("rte_warmup").join("ablation_rte_warmup_steps.svg");
    assert_texts(&one, &["TriAdaptLoRA", "RTE: dev accuracy vs warm-up steps t_w"]);
    assert!(!svg_texts(&one).iter().any(|t| t.contains("IncreLoRA")), "IncreLoRA has no method.triadapt.warmup_steps");
    let e = report::curves::run(&dir, &out, &PlotOptions { x: Some("method.triadapt.nope".into()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("method.triadapt.nope") && e.contains("method.increlora.init_warmup"), "{e}");
}

/// Two methods with the same scores at every point of an ablation (the demo's case): both lines
/// stay visible. TriAdaptLoRA (red) and LoRA (orange) at reference rank 2 and 4, one seed each,
/// both 0.90 and 0.95.
#[test]
fn identical_ablation_lines_both_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results").join("same");
    let mut csv = String::from("run_id,name,task,method,seed,method.triadapt.ref_rank,method.lora.rank,status,error,main_metric,best_score,best_step,accuracy,total_rank,rank_budget,run_dir\n");
    for method in ["triadapt", "lora"] {
        for (r, score) in [(2, 0.90), (4, 0.95)] {
            let (a, b) = if method == "triadapt" { (r.to_string(), String::new()) } else { (String::new(), r.to_string()) };
            writeln!(csv, "{method}_r{r},same,rte,{method},1,{a},{b},finished,,accuracy,{score},100,{score},{},{},", 12 * r, 12 * r)
                .unwrap();
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("runs.csv"), csv).unwrap();
    let out = tmp.path().join("plots");
    let o = triadapt(&["plot", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = out.join("same").join("ablation_rte_ref_rank");
    // The two lines' numbers are the same.
    let rows = csv_maps(&PathBuf::from(format!("{}.csv", stem.display())));
    let means = |m: &str| rows.iter().filter(|r| r["method"] == m).map(|r| (r["x"].clone(), r["mean"].clone())).collect::<Vec<_>>();
    assert_eq!(means("triadapt"), means("lora"));
    assert_eq!(means("triadapt").len(), 2);
    let svg = std::fs::read_to_string(format!("{}.svg", stem.display())).unwrap();
    keep_for_demo(&[PathBuf::from(format!("{}.svg", stem.display())), PathBuf::from(format!("{}.png", stem.display()))]);
    // Each method's markers in its own shape: 2 points and 1 in the legend (the topmost).
    let marks = |color: &str| {
        let mut m = svg_markers(&svg, color);
        m.sort_by(|a, b| a.1 .1.total_cmp(&b.1 .1));
        m
    };
    let (tri, lora) = (marks("#D62728"), marks("#FF7F0E"));
    assert_eq!(tri.iter().map(|m| m.0).collect::<Vec<_>>(), ["circle"; 3], "{tri:?}");
    assert_eq!(lora.iter().map(|m| m.0).collect::<Vec<_>>(), ["diamond"; 3], "{lora:?}");
    // At each point the two markers sit side by side: same height, at least 8 pixels apart.
    let mut tri_points: Vec<(f64, f64)> = tri[1..].iter().map(|m| m.1).collect();
    let mut lora_points: Vec<(f64, f64)> = lora[1..].iter().map(|m| m.1).collect();
    tri_points.sort_by(|a, b| a.0.total_cmp(&b.0));
    lora_points.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (t, l) in tri_points.iter().zip(&lora_points) {
        assert!((t.1 - l.1).abs() < 1.0 && (t.0 - l.0).abs() >= 8.0, "TriAdaptLoRA at {t:?}, LoRA at {l:?}");
    }
    // TriAdaptLoRA's line solid (one polyline through its points, and the legend sample), LoRA's
    // dashed over it: many short segments.
    let lines =
        |color: &str| svg.split("<polyline").skip(1).filter(|e| svg_attr(&e[..e.find("/>").unwrap()], "stroke") == Some(color)).count();
    assert_eq!(lines("#D62728"), 2, "one solid line and the legend sample");
    assert!(lines("#FF7F0E") >= 10, "LoRA's line dashed: {} segments", lines("#FF7F0E"));
}
