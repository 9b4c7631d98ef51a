//! Plain-text tables whose column widths come from their content: nothing is cut, every
//! column lines up however long a cell is. Widths are counted in characters.

/// A table: a header row and rows of cells.
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

/// The space between two columns.
const GAP: &str = "  ";

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row; missing cells are empty, extra cells are kept.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, each ending with a newline and none with trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                let pad = width - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_the_longest_cell() {
        let mut t = Table::new(&["JOB", "TRIGGERS", "STATUS"]);
        t.row(vec![
            "a".into(),
            "watch inbox/very/long/*.csv".into(),
            "ok".into(),
        ]);
        t.row(vec!["überlang".into(), "manual".into(), "ok".into()]);
        t.row(vec![String::new(), String::new(), "more".into()]);
        assert_eq!(
            t.render(),
            "JOB       TRIGGERS                     STATUS\n\
             a         watch inbox/very/long/*.csv  ok\n\
             überlang  manual                       ok\n\
             \x20                                      more\n"
        );
    }
}
