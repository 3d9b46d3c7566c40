//! Shell words: quoting an argument for `bash -c`, and showing a command in a log as kojid
//! does.

/// Quote `arg` as one word for `bash -c` (shlex's POSIX quoting); plain words stay as they are.
/// A NUL byte cannot be in an argument at all and is refused by every caller earlier, so here
/// it is replaced rather than panicking.
pub fn quote(arg: &str) -> String {
    match shlex::try_quote(arg) {
        Ok(quoted) => quoted.into_owned(),
        Err(_) => quote(&arg.replace('\0', "")),
    }
}

/// koji.util.format_shell_cmd: the argv joined by spaces, wrapped before 78 columns with
/// ` \` line continuations.
pub fn format_cmd(argv: &[String]) -> String {
    const WIDTH: usize = 80 - 2;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for bit in argv {
        if line.chars().count() + bit.chars().count() > WIDTH && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(bit);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join(" \\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_words_and_makes_odd_ones_one_word() {
        assert_eq!(
            quote("/builddir/build/SPECS/tiny.spec"),
            "/builddir/build/SPECS/tiny.spec"
        );
        assert_eq!(quote("x86_64"), "x86_64");
        for odd in ["my spec's.spec", "a b", "$(reboot)", "`x`", "a;b", ""] {
            let quoted = quote(odd);
            let back = shlex::split(&quoted).unwrap();
            assert_eq!(back, [odd], "{quoted}");
        }
        assert_eq!(quote("nul\0byte"), "nulbyte");
    }

    #[test]
    fn commands_wrap_like_kojis_format_shell_cmd() {
        let argv: Vec<String> = ["createrepo_c", "--error-exit-val", "-vd", "-o", "/x"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(format_cmd(&argv), "createrepo_c --error-exit-val -vd -o /x");
        let long: Vec<String> = (0..30).map(|i| format!("arg{i}")).collect();
        let shown = format_cmd(&long);
        assert!(
            shown
                .lines()
                .all(|l| l.trim_end_matches(" \\").chars().count() <= 80),
            "{shown}"
        );
        assert!(shown.contains(" \\\n"));
    }
}
