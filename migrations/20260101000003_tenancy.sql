-- Organizations and memberships: keyed by Clerk ids, versioned by Clerk's updated_at, soft
-- deleted with tombstones, like users. A membership may name a user or organization we have
-- not seen yet: it is kept, and user_id / organization_id attach when they arrive.

CREATE TABLE IF NOT EXISTS organizations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clerk_org_id     text NOT NULL UNIQUE,
    name             text,
    slug             text,
    image_url        text,
    created_by       text,
    public_metadata  jsonb NOT NULL DEFAULT '{}'::jsonb,
    clerk_updated_at bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);

CREATE TABLE IF NOT EXISTS memberships (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clerk_membership_id text NOT NULL UNIQUE,
    clerk_org_id        text NOT NULL,
    clerk_user_id       text NOT NULL,
    organization_id     uuid REFERENCES organizations (id),
    user_id             uuid REFERENCES users (id),
    role                text NOT NULL,
    clerk_updated_at    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE INDEX IF NOT EXISTS memberships_user_idx ON memberships (clerk_user_id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS memberships_org_idx ON memberships (clerk_org_id);
