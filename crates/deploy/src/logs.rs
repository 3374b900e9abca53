//! Recent log lines per deployment, kept in memory on the node that produced them and
//! gathered from every node by `xnode logs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::proto::LogLine;

/// Lines kept per deployment on one node.
const LINES_PER_DEPLOYMENT: usize = 500;
/// Longest line kept; longer output is cut with a marker.
const MAX_LINE: usize = 2048;

#[derive(Default)]
pub struct Logs {
    lines: Mutex<HashMap<(String, String), VecDeque<LogLine>>>,
}

impl Logs {
    /// Appends `text` (split into lines) to the log of `owner`'s `deployment`.
    pub fn push(&self, owner: &str, deployment: &str, line: LogLine) {
        let mut map = xnode_types::lock(&self.lines);
        let log = map
            .entry((owner.to_owned(), deployment.to_owned()))
            .or_default();
        for part in line.message.lines() {
            let mut message = part.to_owned();
            if message.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" …(cut)");
            }
            log.push_back(LogLine {
                message,
                ..line.clone()
            });
            if log.len() > LINES_PER_DEPLOYMENT {
                log.pop_front();
            }
        }
    }

    /// Appends raw output bytes of a stream.
    pub fn push_output(&self, owner: &str, deployment: &str, template: LogLine, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        self.push(
            owner,
            deployment,
            LogLine {
                message: text.trim_end().to_owned(),
                ..template
            },
        );
    }

    pub fn get(&self, owner: &str, deployment: &str) -> Vec<LogLine> {
        xnode_types::lock(&self.lines)
            .get(&(owner.to_owned(), deployment.to_owned()))
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn forget(&self, owner: &str, deployment: &str) {
        xnode_types::lock(&self.lines).remove(&(owner.to_owned(), deployment.to_owned()));
    }
}
