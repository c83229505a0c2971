-- One row per (user, kind): an email is claimed here before it is sent, so duplicate jobs and
-- retries never send twice. A claim older than the lease (a worker died between claim and
-- send) may be taken over, so the mail is not lost either.
CREATE TABLE IF NOT EXISTS sent_emails (
    user_id    uuid NOT NULL REFERENCES users (id),
    kind       text NOT NULL,
    recipient  text NOT NULL,
    status     text NOT NULL CHECK (status IN ('sending', 'sent')),
    claims     integer NOT NULL DEFAULT 1,
    claimed_at timestamptz,
    sent_at    timestamptz,
    PRIMARY KEY (user_id, kind)
);
