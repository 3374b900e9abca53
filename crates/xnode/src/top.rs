//! `xnode top`: a live terminal view of the network, in the style of `htop`.

use std::time::Duration;

use serde_json::Value;

use crate::client::get_json;

const CLEAR: &str = "\x1b[2J\x1b[H";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

fn pct(used: f64, total: f64) -> String {
    if total <= 0.0 {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * used / total)
    }
}

fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..8], &id[id.len() - 6..])
    } else {
        id.to_owned()
    }
}

fn rate_cells(r: &Value) -> [String; 4] {
    if r.is_null() {
        return ["0.0".into(), "0.0%".into(), "-".into(), "-".into()];
    }
    [
        format!("{:.1}", r["requests_per_sec"].as_f64().unwrap_or(0.0)),
        format!("{:.1}%", 100.0 * r["error_rate"].as_f64().unwrap_or(0.0)),
        format!("{:.1}", r["latency_ms"]["p99"].as_f64().unwrap_or(0.0)),
        format!("{:.1}", r["latency_ms"]["p50"].as_f64().unwrap_or(0.0)),
    ]
}

fn table(header: &[&str], rows: &[Vec<String>], out: &mut String) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    // Widths count visible characters only: colour codes take no room on screen.
    let visible = |c: &str| plain(c).chars().count();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible(c));
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i].saturating_sub(visible(c)))))
            .collect::<Vec<_>>()
            .join("  ")
    };
    out.push_str(&format!(
        "{BOLD}{}{RESET}\n",
        line(header.iter().map(|h| h.to_string()).collect())
    ));
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
}

/// Renders one frame from the node list and the network view.
fn frame(api: &str, nodes: &Value, network: &Value) -> String {
    let mut out = String::new();
    let list = nodes.as_array().cloned().unwrap_or_default();
    let count = |s: &str| list.iter().filter(|n| n["state"] == s).count();
    out.push_str(&format!(
        "{BOLD}xnode top{RESET} — {api} — {} nodes: {} alive, {} suspect, {} dead, {} left — {} active tenants\n\n",
        list.len(),
        count("alive"),
        count("suspect"),
        count("dead"),
        count("left"),
        network["active_tenants"]
    ));
    // Beyond `observe_summaries_up_to` live nodes summaries are not gossiped: the answering
    // node holds its own figures only, and another's are asked of that node.
    let on_demand = network["node_figures"] == "on_demand";
    if on_demand {
        out.push_str(&format!(
            "{DIM}A large network: nodes no longer send every node their figures, so the rows show this node's own; another node's: {api}/v1/observe/nodes/ID{RESET}\n\n"
        ));
    }
    let reports: Vec<Value> = network["nodes"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap_or("?");
            let state = n["state"].as_str().unwrap_or("?");
            let state = match state {
                "alive" => state.to_owned(),
                "suspect" => format!("{YELLOW}{state}{RESET}"),
                _ => format!("{RED}{state}{RESET}"),
            };
            let r = reports
                .iter()
                .find(|r| r["id"] == n["id"])
                .cloned()
                .unwrap_or(Value::Null);
            if on_demand && r.is_null() {
                let unknown = || "?".to_owned();
                let zone = n["zone"].as_str().unwrap_or("-").to_owned();
                let mut row = vec![short(id), state, zone];
                row.extend(std::iter::repeat_with(unknown).take(6));
                return row;
            }
            let sys = &r["system"];
            let [rps, err, p99, _] = rate_cells(&r["last_minute"]);
            vec![
                short(id),
                state,
                n["zone"].as_str().unwrap_or("-").to_owned(),
                rps,
                err,
                p99,
                pct(
                    sys["cpu_busy_millis"].as_f64().unwrap_or(0.0),
                    sys["cpu_cores"].as_f64().unwrap_or(0.0) * 1000.0,
                ),
                pct(
                    sys["memory_used_bytes"].as_f64().unwrap_or(0.0),
                    sys["memory_total_bytes"].as_f64().unwrap_or(0.0),
                ),
                pct(
                    sys["disk_used_bytes"].as_f64().unwrap_or(0.0),
                    sys["disk_total_bytes"].as_f64().unwrap_or(0.0),
                ),
            ]
        })
        .collect();
    table(
        &[
            "NODE", "STATE", "ZONE", "REQ/S", "ERR", "P99 MS", "CPU", "MEM", "DISK",
        ],
        &rows,
        &mut out,
    );

    out.push('\n');
    let scopes = network["windows"]["1m"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // Deployments get their own table, with the fuel they burn.
    let mut deployments: Vec<(f64, Vec<String>)> = scopes
        .iter()
        .filter_map(|(name, r)| {
            let name = name.strip_prefix("deployment:")?;
            let [rps, err, p99, p50] = rate_cells(r);
            let rate = r["requests_per_sec"].as_f64().unwrap_or(0.0);
            let fuel = r["fuel"].as_f64().unwrap_or(0.0) / 60.0;
            Some((
                rate,
                vec![name.to_owned(), rps, err, p50, p99, format!("{:.0}", fuel)],
            ))
        })
        .collect();
    deployments.sort_by(|a, b| b.0.total_cmp(&a.0));
    if !deployments.is_empty() {
        let rows: Vec<Vec<String>> = deployments.into_iter().map(|(_, r)| r).collect();
        table(
            &[
                "DEPLOYMENT (last 1 min)",
                "REQ/S",
                "ERR",
                "P50 MS",
                "P99 MS",
                "FUEL/S",
            ],
            &rows,
            &mut out,
        );
        out.push('\n');
    }
    let mut rows: Vec<(f64, Vec<String>)> = scopes
        .iter()
        .filter(|(name, _)| !name.starts_with("deployment:"))
        .map(|(name, r)| {
            let [rps, err, p99, p50] = rate_cells(r);
            let rate = r["requests_per_sec"].as_f64().unwrap_or(0.0);
            let kib = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or(0.0) / 1024.0 / 60.0);
            (
                rate,
                vec![
                    name.clone(),
                    rps,
                    err,
                    p50,
                    p99,
                    kib(&r["bytes_in"]),
                    kib(&r["bytes_out"]),
                ],
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
    if rows.is_empty() {
        out.push_str(&format!("{DIM}no requests in the last minute{RESET}\n"));
    } else {
        table(
            &[
                "SCOPE (last 1 min)",
                "REQ/S",
                "ERR",
                "P50 MS",
                "P99 MS",
                "IN KiB/S",
                "OUT KiB/S",
            ],
            &rows,
            &mut out,
        );
    }
    out.push_str(&format!(
        "\n{DIM}refreshes every second; Ctrl-C to quit{RESET}\n"
    ));
    out
}

/// Removes ANSI escape sequences, for output that is not a terminal.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub async fn run(api: &str, once: bool, json: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let color = std::io::stdout().is_terminal();
    loop {
        let nodes = get_json(api, "/v1/nodes").await?;
        let network = get_json(api, "/v1/observe/network").await?;
        if json {
            println!(
                "{}",
                serde_json::json!({"nodes": nodes, "network": network})
            );
        } else {
            let text = frame(api, &nodes, &network);
            match (color, once) {
                (true, false) => print!("{CLEAR}{text}"),
                (true, true) => print!("{text}"),
                (false, _) => print!("{}", plain(&text)),
            }
        }
        if once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_network_shows_unknown_figures_for_nodes_not_asked() {
        let nodes = serde_json::json!([
            {"id": "12D3KooWAAAAAAAAAAAA", "state": "alive", "zone": "a"},
            {"id": "12D3KooWBBBBBBBBBBBB", "state": "alive", "zone": "b"},
        ]);
        let own = serde_json::json!({
            "id": "12D3KooWAAAAAAAAAAAA",
            "system": {"cpu_busy_millis": 500, "cpu_cores": 2, "memory_used_bytes": 1,
                       "memory_total_bytes": 4, "disk_used_bytes": 1, "disk_total_bytes": 2},
            "last_minute": null,
        });
        let network = |mode: &str| serde_json::json!({"nodes": [own.clone()], "node_figures": mode, "windows": {}});
        let large = frame("http://x", &nodes, &network("on_demand"));
        assert!(large.contains("rows show this node's own"), "{large}");
        let other = large
            .lines()
            .find(|l| l.contains("12D3Ko") && l.contains('b'))
            .unwrap();
        assert!(other.contains('?'), "{other}");
        let small = frame("http://x", &nodes, &network("gossiped"));
        assert!(!small.contains("rows show this node's own"));
        assert!(!small.contains('?'), "{small}");
    }
}
