//! Server-Sent Events, formatted as the HTML standard's `text/event-stream`
//! defines them: each line of the data on a `data:` line of its own, and a
//! blank line to dispatch the event.

/// One event carrying `data`. Line breaks in `data` (`\n`, `\r\n` or `\r`)
/// become separate `data:` lines, which a client joins back with `\n`.
pub fn event(data: &str) -> String {
    named("", data)
}

/// One event of type `name` carrying `data`; an empty `name` is the default
/// type, `message`.
pub fn named(name: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + name.len() + 16);
    if !name.is_empty() {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    for line in data.split("\r\n").flat_map(|line| line.split(['\n', '\r'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_one_data_field() {
        assert_eq!(event("hello"), "data: hello\n\n");
        assert_eq!(event(""), "data: \n\n");
    }

    #[test]
    fn every_kind_of_line_break_splits_the_data() {
        assert_eq!(event("a\nb\r\nc\rd"), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(event("\n"), "data: \ndata: \n\n");
    }

    #[test]
    fn a_named_event_says_its_type_first() {
        assert_eq!(named("token", "x"), "event: token\ndata: x\n\n");
    }
}
