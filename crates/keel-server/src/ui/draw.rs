//! The pictures the pages show, laid out on the server: a workflow's DAG,
//! a run's waterfall, a queue's hour as a small chart. Pure geometry — names, states and times in,
//! boxes and paths out — which the templates turn into inline SVG (and
//! escape), so the browser runs no script to draw them.

use keel_core::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// A step's box.
const NODE_W: u32 = 168;
const NODE_H: u32 = 40;
const GAP_X: u32 = 56;
const GAP_Y: u32 = 16;
const PAD: u32 = 8;
/// Characters of a name shown in a box; the whole name is its tooltip.
const LABEL_CHARS: usize = 20;

/// One step of a DAG to draw.
pub(super) struct StepShape<'a> {
    pub name: &'a str,
    pub needs: &'a [String],
    /// What it does ("task emails", "sleep", ...).
    pub detail: String,
    /// Its state in a run (a CSS class: `failed`, `running`, ...), or
    /// `step` for a definition.
    pub class: &'a str,
}

#[derive(Serialize, Debug)]
pub(super) struct Dag {
    pub width: u32,
    pub height: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Serialize, Debug)]
pub(super) struct Node {
    pub name: String,
    pub label: String,
    pub detail: String,
    pub class: String,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// An SVG path from a step to one that needs it.
#[derive(Serialize, Debug)]
pub(super) struct Edge {
    pub d: String,
}

/// Lays a DAG out left to right: a step's column is the longest chain of
/// needs before it; within a column, steps sit near the steps they need
/// (the average row of those), which keeps most edges from crossing.
/// Needs of steps not in `steps` are ignored.
pub(super) fn dag(steps: &[StepShape<'_>]) -> Dag {
    let index: BTreeMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.name, i)).collect();
    let mut column: Vec<Option<usize>> = vec![None; steps.len()];
    for i in 0..steps.len() {
        column_of(i, steps, &index, &mut column, 0);
    }
    let column: Vec<usize> = column.into_iter().map(|c| c.unwrap_or(0)).collect();
    let columns = column.iter().max().map_or(0, |c| c + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); columns];
    let mut row_of = vec![0f64; steps.len()];
    for (c, members) in rows.iter_mut().enumerate() {
        let mut here: Vec<(f64, &str, usize)> = (0..steps.len())
            .filter(|&i| column[i] == c)
            .map(|i| {
                let before: Vec<f64> = steps[i]
                    .needs
                    .iter()
                    .filter_map(|n| index.get(n.as_str()))
                    .map(|&j| row_of[j])
                    .collect();
                let centre = if before.is_empty() {
                    0.0
                } else {
                    before.iter().sum::<f64>() / before.len() as f64
                };
                (centre, steps[i].name, i)
            })
            .collect();
        here.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        for (row, (_, _, i)) in here.into_iter().enumerate() {
            row_of[i] = row as f64;
            members.push(i);
        }
    }
    let tallest = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let height = if tallest == 0 {
        0
    } else {
        2 * PAD + tallest * (NODE_H + GAP_Y) - GAP_Y
    };
    let width = if columns == 0 {
        0
    } else {
        2 * PAD + columns as u32 * (NODE_W + GAP_X) - GAP_X
    };
    let mut at = vec![(0u32, 0u32); steps.len()];
    for (c, members) in rows.iter().enumerate() {
        // Each column centred on the tallest.
        let offset = (tallest - members.len() as u32) * (NODE_H + GAP_Y) / 2;
        for (row, &i) in members.iter().enumerate() {
            at[i] = (
                PAD + c as u32 * (NODE_W + GAP_X),
                PAD + offset + row as u32 * (NODE_H + GAP_Y),
            );
        }
    }
    let nodes = steps
        .iter()
        .zip(&at)
        .map(|(s, &(x, y))| Node {
            name: s.name.to_owned(),
            label: shorten(s.name),
            detail: shorten(&s.detail),
            class: s.class.to_owned(),
            x,
            y,
            w: NODE_W,
            h: NODE_H,
        })
        .collect();
    let mut edges = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        for need in s.needs {
            let Some(&j) = index.get(need.as_str()) else {
                continue;
            };
            let (x1, y1) = (at[j].0 + NODE_W, at[j].1 + NODE_H / 2);
            let (x2, y2) = (at[i].0, at[i].1 + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            edges.push(Edge {
                d: format!("M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}"),
            });
        }
    }
    Dag {
        width,
        height,
        nodes,
        edges,
    }
}

/// The column of step `i`: 0 without needs, else one past its deepest
/// need's. `depth` stops a cycle (a definition never has one) from
/// recursing forever.
fn column_of(
    i: usize,
    steps: &[StepShape<'_>],
    index: &BTreeMap<&str, usize>,
    column: &mut [Option<usize>],
    depth: usize,
) -> usize {
    if let Some(c) = column[i] {
        return c;
    }
    if depth > steps.len() {
        return 0;
    }
    let c = steps[i]
        .needs
        .iter()
        .filter_map(|n| index.get(n.as_str()))
        .map(|&j| column_of(j, steps, index, column, depth + 1) + 1)
        .max()
        .unwrap_or(0);
    column[i] = Some(c);
    c
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(LABEL_CHARS - 1).collect();
    short.push('…');
    short
}

/// A step's row in a waterfall.
pub(super) struct Span<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub started: Option<Timestamp>,
    /// `None` while it runs: the bar reaches the chart's end.
    pub finished: Option<Timestamp>,
    /// When its failed attempts ended.
    pub failures: Vec<Timestamp>,
}

#[derive(Serialize, Debug)]
pub(super) struct Waterfall {
    pub width: u32,
    pub height: u32,
    /// Where the bars start: the names are left of it.
    pub track_x: u32,
    pub rows: Vec<Bar>,
    pub ticks: Vec<Tick>,
}

#[derive(Serialize, Debug)]
pub(super) struct Bar {
    pub name: String,
    pub label: String,
    pub class: String,
    pub y: u32,
    /// No bar for a step that never started.
    pub x: Option<u32>,
    pub w: u32,
    pub took: String,
    pub failures: Vec<u32>,
}

#[derive(Serialize, Debug)]
pub(super) struct Tick {
    pub x: u32,
    pub label: String,
}

const TRACK_X: u32 = 180;
const TRACK_W: u32 = 720;
const ROW_H: u32 = 22;
const AXIS_H: u32 = 20;

/// Lays out the steps of a run from `from` (its start) to `to` (its end,
/// or now), started steps in the order they started.
pub(super) fn waterfall(mut spans: Vec<Span<'_>>, from: Timestamp, to: Timestamp) -> Waterfall {
    spans.sort_by_key(|s| (s.started.is_none(), s.started, s.name));
    let total = to.millis_since(from).max(1);
    let x_of = |t: Timestamp| {
        let ms = t.millis_since(from).min(total);
        TRACK_X + (u128::from(ms) * u128::from(TRACK_W) / u128::from(total)) as u32
    };
    let rows = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let y = AXIS_H + i as u32 * ROW_H;
            let (x, w, took) = match s.started {
                Some(start) => {
                    let end = s.finished.unwrap_or(to);
                    let (a, b) = (x_of(start), x_of(end));
                    (Some(a), (b - a).max(2), duration(end.millis_since(start)))
                }
                None => (None, 0, String::new()),
            };
            Bar {
                name: s.name.to_owned(),
                label: shorten(s.name),
                class: s.class.to_owned(),
                y,
                x,
                w,
                took,
                failures: s.failures.iter().map(|&t| x_of(t)).collect(),
            }
        })
        .collect();
    let ticks = (0..=4)
        .map(|k| Tick {
            x: TRACK_X + TRACK_W * k / 4,
            label: duration(total * u64::from(k) / 4),
        })
        .collect();
    Waterfall {
        width: TRACK_X + TRACK_W + 48,
        height: AXIS_H + spans.len() as u32 * ROW_H + 4,
        track_x: TRACK_X,
        rows,
        ticks,
    }
}

/// A duration the way a person reads it: `850 ms`, `12.4 s`, `3 min`, `2.5 h`.
pub(super) fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{:.1} min", ms as f64 / 6e4),
        _ => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}

/// A small chart of per-minute counts: one polyline per series, on one
/// scale from zero to the largest count.
#[derive(Serialize, Debug)]
pub(super) struct Spark {
    pub width: u32,
    pub height: u32,
    /// SVG `points` of each series, in the order given.
    pub lines: Vec<String>,
    pub max: u64,
}

const SPARK_W: u32 = 120;
const SPARK_H: u32 = 24;

pub(super) fn spark(series: &[&[u64]]) -> Spark {
    let max = series
        .iter()
        .flat_map(|s| s.iter().copied())
        .max()
        .unwrap_or(0);
    let lines = series
        .iter()
        .map(|values| {
            let step = SPARK_W as f64 / values.len().saturating_sub(1).max(1) as f64;
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let y = SPARK_H as f64
                        - 1.0
                        - (SPARK_H as f64 - 2.0) * v as f64 / max.max(1) as f64;
                    format!("{:.1},{y:.1}", i as f64 * step)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Spark {
        width: SPARK_W,
        height: SPARK_H,
        lines,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape<'a>(name: &'a str, needs: &'a [String]) -> StepShape<'a> {
        StepShape {
            name,
            needs,
            detail: String::new(),
            class: "step",
        }
    }

    #[test]
    fn a_spark_scales_every_series_to_the_largest_count() {
        let spark = spark(&[&[0, 5, 10], &[0, 0, 5]]);
        assert_eq!(spark.max, 10);
        assert_eq!(spark.lines[0], "0.0,23.0 60.0,12.0 120.0,1.0");
        assert_eq!(spark.lines[1], "0.0,23.0 60.0,23.0 120.0,12.0");
        assert_eq!(super::spark(&[&[0, 0]]).lines[0], "0.0,23.0 120.0,23.0");
    }

    #[test]
    fn a_step_sits_one_column_past_its_deepest_need() {
        let (none, a, ab) = (
            Vec::new(),
            vec!["a".to_owned()],
            vec!["a".to_owned(), "b".to_owned()],
        );
        // a → b → c, and a → c: c goes after b, not beside it.
        let steps = [shape("c", &ab), shape("b", &a), shape("a", &none)];
        let dag = dag(&steps);
        let x = |name: &str| dag.nodes.iter().find(|n| n.name == name).unwrap().x;
        assert!(x("a") < x("b") && x("b") < x("c"), "{dag:?}");
        assert_eq!(dag.edges.len(), 3);
        assert_eq!(dag.width, 2 * PAD + 3 * NODE_W + 2 * GAP_X);
    }

    #[test]
    fn steps_of_one_column_do_not_overlap_and_follow_their_needs() {
        let none = Vec::new();
        let (on_a, on_z) = (vec!["a".to_owned()], vec!["z".to_owned()]);
        // z's child sorts before a's by name but sits beside z (row 1).
        let steps = [
            shape("a", &none),
            shape("z", &none),
            shape("after-z", &on_z),
            shape("b-after-a", &on_a),
        ];
        let dag = dag(&steps);
        let y = |name: &str| dag.nodes.iter().find(|n| n.name == name).unwrap().y;
        assert!(y("a") + NODE_H <= y("z"));
        assert!(y("b-after-a") < y("after-z"), "{dag:?}");
        assert_eq!(dag.height, 2 * PAD + 2 * NODE_H + GAP_Y);
    }

    #[test]
    fn long_names_are_shortened_and_a_cycle_does_not_hang() {
        let (to_b, to_a) = (vec!["b".to_owned()], vec!["a".to_owned()]);
        let steps = [shape("a", &to_b), shape("b", &to_a)];
        assert_eq!(dag(&steps).nodes.len(), 2);
        assert_eq!(
            shorten("a-very-long-step-name-indeed").chars().count(),
            LABEL_CHARS
        );
        assert!(dag(&[]).nodes.is_empty());
    }

    #[test]
    fn the_waterfall_spans_the_run_and_marks_failed_attempts() {
        let t = Timestamp::from_millis(1_000_000);
        let spans = vec![
            Span {
                name: "late",
                class: "running",
                started: Some(t.plus_ms(500)),
                finished: None,
                failures: vec![],
            },
            Span {
                name: "never",
                class: "skipped",
                started: None,
                finished: None,
                failures: vec![],
            },
            Span {
                name: "first",
                class: "failed",
                started: Some(t),
                finished: Some(t.plus_ms(250)),
                failures: vec![t.plus_ms(100)],
            },
        ];
        let w = waterfall(spans, t, t.plus_ms(1000));
        let names: Vec<_> = w.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["first", "late", "never"]);
        assert_eq!((w.rows[0].x, w.rows[0].w), (Some(TRACK_X), TRACK_W / 4));
        assert_eq!(w.rows[0].failures, [TRACK_X + TRACK_W / 10]);
        assert_eq!(w.rows[1].x.unwrap() + w.rows[1].w, TRACK_X + TRACK_W);
        assert_eq!(w.rows[2].x, None);
        assert_eq!(w.ticks.last().unwrap().label, "1.0 s");
        assert_eq!(duration(90_000), "1.5 min");
    }
}
