//! `triadapt heatmap`, `plot` and `table` on hand-written results directories: a GLUE sweep
//! (eight tasks, several methods and seeds, rank patterns for MNLI) and an RTE warm-up ablation
//! (two methods, each with its own swept key, three seeds, curve.csv per run).
//!
//! Set TRIADAPT_REPORT_DEMO=<dir> to keep copies of the figures and the table there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use triadapt::report::{self, curves::PlotOptions, Runs};

const METRICS: [&str; 8] = ["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr", "m_accuracy", "mm_accuracy", "combined_score"];

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
            rows.push(Row { id, task: task.into(), method: "triadapt".into(), seed, swept: vec![], status: "finished", scores: triadapt_scores(task, seed), params: 330_000, run_dir });
            // LoRA: every score 0.01 lower, no run folders.
            let scores = triadapt_scores(task, seed).into_iter().map(|(m, v)| (m, v - 0.01)).collect();
            rows.push(Row { id: format!("{task}_lora_s{seed}"), task: task.into(), method: "lora".into(), seed, swept: vec![], status: "finished", scores, params: 340_000, run_dir: String::new() });
        }
    }
    // AdaLoRA: RTE and MNLI only (absolute run_dir); IncreLoRA: MNLI only.
    let ada = dir.join("runs").join("mnli_adalora_s1");
    write_pattern(&ada, |l, j| if l < 3 { 0 } else { ((l * j) % 6) as i64 });
    rows.push(Row { id: "mnli_adalora_s1".into(), task: "mnli".into(), method: "adalora".into(), seed: 1, swept: vec![], status: "finished", scores: vec![("m_accuracy", 0.89), ("mm_accuracy", 0.90)], params: 320_000, run_dir: ada.display().to_string() });
    rows.push(Row { id: "rte_adalora_s1".into(), task: "rte".into(), method: "adalora".into(), seed: 1, swept: vec![], status: "finished", scores: vec![("accuracy", 0.85)], params: 320_000, run_dir: String::new() });
    write_pattern(&dir.join("runs").join("mnli_increlora_s1"), |l, _| 1 + (l % 3) as i64);
    rows.push(Row { id: "mnli_increlora_s1".into(), task: "mnli".into(), method: "increlora".into(), seed: 1, swept: vec![], status: "finished", scores: vec![("m_accuracy", 0.895), ("mm_accuracy", 0.90)], params: 330_000, run_dir: "runs/mnli_increlora_s1".into() });
    // A failed run: left out everywhere (it would pull TriAdaptLoRA's RTE mean down).
    rows.push(Row { id: "rte_triadapt_s3".into(), task: "rte".into(), method: "triadapt".into(), seed: 3, swept: vec![], status: "failed", scores: vec![("accuracy", 0.10)], params: 330_000, run_dir: String::new() });
    write_runs_csv(&dir, &[], &rows);
    (dir, triadapt_total)
}

const WARMUPS: [i64; 4] = [100, 200, 400, 800];

/// Dev accuracy of a run: best at the second warm-up value, 0.005 apart between seeds.
fn ablation_score(method: &str, w: usize, seed: i64) -> f64 {
    let base = if method == "triadapt" { 0.80 } else { 0.78 };
    base + [0.0, 0.02, 0.01, -0.01][w] + 0.005 * seed as f64
}

/// Writes a curve.csv of 1000 steps: loss decays, dev metric every 100 steps, total rank grows
/// from 72 after `warmup` up to 144 (TriAdaptLoRA by 8 every 50 steps, IncreLoRA by 5 every 100).
fn write_curve(dir: &Path, method: &str, warmup: i64, score: f64) {
    std::fs::create_dir_all(dir).unwrap();
    let (scale, tau, every, by) = if method == "triadapt" { (0.70, 300.0, 50, 8) } else { (0.75, 380.0, 100, 5) };
    let mut s = String::from("step,loss,lr,dev_metric,total_rank\n");
    for step in 1..=1000i64 {
        let loss = scale * (-(step as f64) / tau).exp() + 0.2 + 0.05 * ((step as f64) * 0.7).sin().abs();
        let dev = if step % 100 == 0 { format!("{}", score - 0.1 * (-(step as f64) / 200.0).exp()) } else { String::new() };
        let rank = if step <= warmup { 72 } else { (72 + by * ((step - warmup) / every + 1)).min(144) };
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
                write_curve(&dir.join("runs").join(&id), method, *w, score);
                let swept = if method == "triadapt" { vec![w.to_string(), String::new()] } else { vec![String::new(), w.to_string()] };
                rows.push(Row { id: id.clone(), task: "rte".into(), method: method.into(), seed, swept, status: "finished", scores: vec![("accuracy", score)], params: 330_000, run_dir: format!("runs/{id}") });
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
    s.split("<text").skip(1).map(|t| {
        let body = &t[t.find('>').expect("tag end") + 1..];
        body[..body.find("</text>").expect("closed")].trim().to_string()
    }).collect()
}

fn assert_texts(path: &Path, needles: &[&str]) {
    let texts = svg_texts(path);
    for needle in needles {
        assert!(texts.iter().any(|t| t.contains(needle)), "{} lacks {needle:?} in its texts {texts:?}", path.display());
    }
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
    let table = report::table::build(&runs, &[]).unwrap();
    let labels: Vec<&str> = table.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["LoRA", "AdaLoRA", "IncreLoRA", "TriAdaptLoRA"], "the paper's order, TriAdaptLoRA last");
    let tri = table.rows.iter().find(|r| r.method == "triadapt").unwrap();
    // TriAdaptLoRA, mean of seeds 1 and 2 per task:
    //   MNLI  m (0.90+0.92)/2 = 0.91, mm 0.91            -> mean(m, mm) = 0.91
    //   SST-2 (0.95+0.96)/2 = 0.955
    //   CoLA  (0.70+0.72)/2 = 0.71
    //   QQP   acc 0.91, F1 0.88                           -> 0.895
    //   QNLI  0.94;  RTE (0.88+0.86)/2 = 0.87 (the failed seed 3 with 0.10 is not counted)
    //   MRPC  0.91;  STS-B Pearson 0.92, Spearman 0.91   -> Corr 0.915
    //   All Avg = (0.91 + 0.955 + 0.71 + 0.895 + 0.94 + 0.87 + 0.91 + 0.915) / 8 = 7.105 / 8 = 0.888125
    let avg = tri.all_avg.expect("all eight tasks present");
    assert!((avg - 0.888125).abs() < 1e-12, "All Avg {avg}");
    assert_eq!(
        tri.cells,
        ["TriAdaptLoRA", "0.33M", "91.0/91.0", "95.5", "71.0", "91.0/88.0", "94.0", "87.0", "91.0", "91.5", "88.8"]
    );
    // LoRA: every score 0.01 lower -> All Avg 0.878125.
    let lora = table.rows.iter().find(|r| r.method == "lora").unwrap();
    assert!((lora.all_avg.unwrap() - 0.878125).abs() < 1e-12);
    assert_eq!(lora.cells[1], "0.34M");
    // AdaLoRA: MNLI and RTE only -> "-" elsewhere, no All Avg.
    let ada = table.rows.iter().find(|r| r.method == "adalora").unwrap();
    assert_eq!(ada.cells, ["AdaLoRA", "0.32M", "89.0/90.0", "-", "-", "-", "-", "85.0", "-", "-", "-"]);
    assert!(ada.all_avg.is_none());

    // The command: prints the markdown and writes table.md and table.csv into --out.
    let out = tmp.path().join("tables");
    let o = triadapt(&["table", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(stdout.contains("| Method | #Params | MNLI (m/mm) | SST-2 (Acc) | CoLA (Mcc) | QQP (Acc/F1) | QNLI (Acc) | RTE (Acc) | MRPC (Acc) | STS-B (Corr) | All Avg |"), "{stdout}");
    assert!(stdout.contains("| TriAdaptLoRA | 0.33M | 91.0/91.0 | 95.5 | 71.0 | 91.0/88.0 | 94.0 | 87.0 | 91.0 | 91.5 | 88.8 |"), "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("table.md")).unwrap(), stdout);
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert!(csv.starts_with("Method,#Params,MNLI (m/mm),"), "{csv}");
    assert!(csv.contains("TriAdaptLoRA,0.33M,91.0/91.0,95.5,71.0,91.0/88.0,94.0,87.0,91.0,91.5,88.8"), "{csv}");
    // Default destination: the results directory.
    let o = triadapt(&["table", dir.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(dir.join("table.md").is_file() && dir.join("table.csv").is_file());
    keep_for_demo(&[out.join("table.md"), out.join("table.csv")]);
}

#[test]
fn heatmap_one_panel_per_method_with_shared_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, tri_total) = glue_fixture(tmp.path());
    let runs = Runs::load(&dir).unwrap();
    let maps = report::heatmap::build(&runs, None).unwrap();
    assert_eq!(maps.len(), 1, "only MNLI runs have rank patterns");
    let h = &maps[0];
    assert_eq!(h.task, "mnli");
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
    let png = out.join("glue").join("heatmap_mnli.png");
    let svg = out.join("glue").join("heatmap_mnli.svg");
    assert_eq!(String::from_utf8(o.stdout).unwrap(), format!("{}\n{}\n", png.display(), svg.display()));
    // 3 panels of 12 layers x 6 matrices: width 110 + 12 * 54 + 160 = 918,
    // height 70 + 3 * (34 + 6 * 36 + 58) + 10 = 1004.
    assert_eq!(png_size(&png), (918, 1004));
    assert_eq!(report::heatmap::figure_size(3, 12, 6), (918, 1004));
    keep_for_demo(&[png.clone(), svg.clone()]);
    let total = format!("total rank {tri_total}");
    assert_texts(&svg, &["MNLI: final rank of each adapted matrix", "MNLI · TriAdaptLoRA", "MNLI · AdaLoRA", "MNLI · IncreLoRA", "seed 2", &total, "Wf1", "layer index", "final rank", "weight matrix"]);
    // Every cell's value is written: 3 panels x 72 cells, plus layer ticks 1-12 under each panel
    // and the colour bar's ticks 0-5.
    let texts = svg_texts(&svg);
    let small = texts.iter().filter(|t| t.parse::<i64>().is_ok_and(|v| (0..=5).contains(&v))).count();
    let ticks = 3 * 5 + 6;
    assert_eq!(small, 3 * 72 + ticks, "value labels");
    // A task without rank patterns is an error naming the task.
    let e = report::heatmap::build(&runs, Some("rte")).unwrap_err().to_string();
    assert!(e.contains("rte") && e.contains("rank_pattern.json"), "{e}");
}

#[test]
fn ablation_rank_growth_and_training_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ablation_fixture(tmp.path());
    let runs = Runs::load(&dir).unwrap();
    assert_eq!(runs.swept, ["method.triadapt.warmup_steps", "method.increlora.init_warmup"]);
    // The default knob joins the two per-method warm-up columns.
    let keys = vec!["method.triadapt.warmup_steps".to_string(), "method.increlora.init_warmup".to_string()];
    let a = report::curves::build_ablation(&runs, "rte", &keys, "best_score").unwrap().unwrap();
    assert_eq!(a.x_label, "warm-up steps t_w");
    assert_eq!(a.y_label, "dev accuracy (%)");
    let labels: Vec<&str> = a.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["IncreLoRA", "TriAdaptLoRA"]);
    let tri = &a.series[1];
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
    let expect = [("ablation_rte_warmup_steps", (900, 620)), ("rank_growth_rte", (900, 620)), ("training_rte", (900, 860))];
    let stdout = String::from_utf8(o.stdout).unwrap();
    let mut kept = Vec::new();
    for (stem, size) in expect {
        let png = figs.join(format!("{stem}.png"));
        assert_eq!(png_size(&png), size, "{stem}");
        assert!(stdout.contains(&png.display().to_string()), "{stdout}");
        kept.push(png);
        kept.push(figs.join(format!("{stem}.svg")));
    }
    keep_for_demo(&kept);
    assert_texts(
        &figs.join("ablation_rte_warmup_steps.svg"),
        &["RTE: dev accuracy vs warm-up steps t_w", "warm-up steps t_w", "dev accuracy (%)", "TriAdaptLoRA", "IncreLoRA", "mean over seeds (3 runs per point)"],
    );
    assert_texts(
        &figs.join("rank_growth_rte.svg"),
        &["RTE: total rank during training", "total rank (sum over adapted matrices)", "training step", "TriAdaptLoRA", "IncreLoRA", "dashed: rank budget"],
    );
    assert_texts(&figs.join("training_rte.svg"), &["RTE: training loss and dev accuracy", "training loss", "dev accuracy (%)", "moving mean over 20 steps"]);

    // --x and --metric: a named column; an unknown one is an error naming the swept keys.
    let out2 = tmp.path().join("plots2");
    let o = triadapt(&["plot", dir.to_str().unwrap(), "--out", out2.to_str().unwrap(), "--x", "method.triadapt.warmup_steps", "--metric", "accuracy"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = out2.join("rte_warmup").join("ablation_rte_warmup_steps.svg");
    assert_texts(&one, &["TriAdaptLoRA", "RTE: dev accuracy vs warm-up steps t_w"]);
    assert!(!svg_texts(&one).iter().any(|t| t.contains("IncreLoRA")), "IncreLoRA has no method.triadapt.warmup_steps");
    let e = report::curves::run(&dir, &out, &PlotOptions { x: Some("method.triadapt.nope".into()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("method.triadapt.nope") && e.contains("method.increlora.init_warmup"), "{e}");
}
