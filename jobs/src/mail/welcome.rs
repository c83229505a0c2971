//! The welcome mail.

use super::Mail;

/// The `sent_emails` kind (and message key prefix) of the welcome mail.
pub const KIND: &str = "welcome";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message for a user (`name` may be absent).
pub fn welcome(user_id: uuid::Uuid, to: &str, name: Option<&str>) -> Mail {
    let greeting = name.map_or_else(|| "Welcome!".to_owned(), |n| format!("Welcome, {n}!"));
    Mail {
        key: format!("{KIND}.{user_id}"),
        to: to.to_owned(),
        subject: "Welcome aboard".into(),
        text: format!("{greeting}\n\nYour account is ready. We are glad to have you.\n"),
        html: format!("<!doctype html><html><body><h1>{}</h1><p>Your account is ready. We are glad to have you.</p></body></html>", escape(&greeting)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_greets_by_name_and_escapes_html() {
        let m = welcome(uuid::Uuid::nil(), "a@example.com", Some("<Al>"));
        assert!(m.text.starts_with("Welcome, <Al>!"));
        assert!(m.html.contains("Welcome, &lt;Al&gt;!"));
        assert!(welcome(uuid::Uuid::nil(), "a@example.com", None)
            .text
            .starts_with("Welcome!"));
        assert_eq!(m.key, "welcome.00000000-0000-0000-0000-000000000000");
    }
}
