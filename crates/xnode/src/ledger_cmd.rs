//! `xnode ledger status` and `xnode ledger epoch N`: how closing epochs stands on the node
//! answering, and one epoch's outcome (root, table, votes, transaction).

use serde_json::Value;

use crate::cli::ClientArgs;
use crate::client::{get_json, print_table};

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or("-").to_owned()
}

/// `xnode ledger status`.
pub async fn status(args: ClientArgs) -> anyhow::Result<()> {
    let status = get_json(&args.api, "/v1/ledger/status").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    if status["enabled"].as_bool() != Some(true) {
        println!("settlement is off on this node ([settlement] enabled = false)");
        return Ok(());
    }
    println!(
        "epoch {} ({} s); committee {} of {}; this node {} ({})",
        status["current_epoch"].as_u64().unwrap_or(0),
        status["epoch_seconds"].as_u64().unwrap_or(0),
        status["threshold"].as_u64().unwrap_or(0),
        status["members"].as_u64().unwrap_or(0),
        if status["member"].as_bool() == Some(true) {
            "is a member"
        } else {
            "publishes only"
        },
        text(&status, "committee_address"),
    );
    let rows: Vec<Vec<String>> = status["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let votes = e["votes"].as_array().cloned().unwrap_or_default();
            let agreeing = votes
                .iter()
                .filter(|v| v["agrees"].as_bool() == Some(true))
                .count();
            vec![
                e["epoch"].as_u64().unwrap_or(0).to_string(),
                text(e, "status"),
                e["bundles"].as_u64().unwrap_or(0).to_string(),
                format!("{agreeing}/{}", votes.len()),
                text(e, "total"),
                text(e, "root"),
                text(e, "tx_hash"),
            ]
        })
        .collect();
    print_table(
        &["EPOCH", "STATUS", "BUNDLES", "VOTES", "TOTAL", "ROOT", "TX"],
        &rows,
    );
    Ok(())
}

/// `xnode ledger epoch N`.
pub async fn epoch(args: ClientArgs, epoch: u64) -> anyhow::Result<()> {
    let record = get_json(&args.api, &format!("/v1/ledger/epoch/{epoch}")).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    println!("epoch {epoch}: {}", text(&record, "status"));
    for field in ["root", "digest", "total", "poster", "tx_hash", "error"] {
        println!("  {field}: {}", text(&record, field));
    }
    println!("  bundles: {}", record["bundles"].as_u64().unwrap_or(0));
    let payouts: Vec<Vec<String>> = record["payouts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| vec![text(p, "address"), text(p, "amount")])
        .collect();
    print_table(&["PAYOUT ADDRESS", "AMOUNT"], &payouts);
    let charges: Vec<Vec<String>> = record["charges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| vec![text(c, "tenant"), text(c, "charged")])
        .collect();
    print_table(&["TENANT", "CHARGED"], &charges);
    let votes: Vec<Vec<String>> = record["votes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            vec![
                text(v, "signer"),
                if v["agrees"].as_bool() == Some(true) {
                    "agrees".into()
                } else {
                    "dissents".into()
                },
                text(v, "digest"),
            ]
        })
        .collect();
    print_table(&["SIGNER", "VOTE", "DIGEST"], &votes);
    let context = &record["context"];
    if context.is_object() {
        println!(
            "  reputation carried from epoch {} ({}), output {}; parameters {}",
            context["previous_epoch"]
                .as_u64()
                .map_or_else(|| "none (initial state)".to_owned(), |e| e.to_string()),
            text(context, "previous_reputation"),
            text(context, "reputation"),
            text(context, "params_digest"),
        );
    }
    let penalties: Vec<Vec<String>> = record["penalties"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            vec![
                text(p, "node"),
                text(p, "level"),
                p["score_ppm"].as_u64().unwrap_or(0).to_string(),
                p["counted_failures"].as_u64().unwrap_or(0).to_string(),
                text(p, "slashed"),
                text(p, "reward_withheld"),
            ]
        })
        .collect();
    if penalties.is_empty() {
        println!("  no penalties");
    } else {
        print_table(
            &[
                "NODE",
                "LEVEL",
                "SCORE PPM",
                "FAILED",
                "SLASHED",
                "WITHHELD",
            ],
            &penalties,
        );
    }
    let slashes: Vec<Vec<String>> = record["slashes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            vec![
                text(s, "operator"),
                text(s, "amount"),
                text(s, "status"),
                text(s, "taken"),
                text(s, "tx_hash"),
                text(s, "error"),
            ]
        })
        .collect();
    if !slashes.is_empty() {
        print_table(
            &[
                "SLASHED OPERATOR",
                "AMOUNT",
                "ON CHAIN",
                "TAKEN",
                "TX",
                "ERROR",
            ],
            &slashes,
        );
    }
    Ok(())
}
