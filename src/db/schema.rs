//! The portable schema: one definition for both backends (see diesel.toml for why it is hand-written).

diesel::table! {
    workspaces (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        hipaa -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        secret_hash -> Binary,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        workspace_id -> Nullable<Text>,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        target_type -> Text,
        target_id -> Nullable<Text>,
        details -> Text,
        request_id -> Nullable<Text>,
    }
}

diesel::joinable!(api_tokens -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(workspaces, api_tokens, audit_events);
