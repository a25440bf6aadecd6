//! CSV for exports an admin opens in a spreadsheet (the audit log, the access review). Cells come
//! from IdPs and clients (a userName, a group name, a justification), and a spreadsheet runs a cell
//! that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a formula, so
//! such a cell is written with a leading `'`, which spreadsheets show as text (OWASP's advice).

/// A CSV document built in memory.
pub struct CsvExport {
    writer: csv::Writer<Vec<u8>>,
}

impl Default for CsvExport {
    fn default() -> Self {
        CsvExport {
            writer: csv::Writer::from_writer(Vec::new()),
        }
    }
}

impl CsvExport {
    /// Appends one row, each cell neutralised.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for cell in cells {
            self.writer
                .write_field(neutralise(cell.as_ref()).as_bytes())
                .expect("writing to memory succeeds");
        }
        self.writer
            .write_record(None::<&[u8]>)
            .expect("writing to memory succeeds");
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.writer
            .into_inner()
            .expect("flushing to memory succeeds")
    }
}

fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_written_as_text() {
        let mut csv = CsvExport::default();
        csv.row([
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\t=1",
            "plain",
            "",
        ]);
        let text = String::from_utf8(csv.into_bytes()).unwrap();
        assert_eq!(
            text,
            "\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-2,'@SUM(A1),'\t=1,plain,\n"
        );
    }
}
