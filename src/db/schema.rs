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

diesel::table! {
    scim_users (seq) {
        seq -> BigInt,
        id -> Text,
        workspace_id -> Text,
        user_name -> Text,
        user_name_ci -> Text,
        external_id -> Nullable<Text>,
        active -> Bool,
        document -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    scim_groups (seq) {
        seq -> BigInt,
        id -> Text,
        workspace_id -> Text,
        display_name -> Text,
        external_id -> Nullable<Text>,
        document -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    scim_group_members (group_id, member_id) {
        group_id -> Text,
        member_id -> Text,
        member_type -> Text,
    }
}

diesel::table! {
    scim_values (resource_id, attribute, element, sub) {
        workspace_id -> Text,
        resource_type -> Text,
        resource_id -> Text,
        attribute -> Text,
        element -> Integer,
        sub -> Text,
        value -> Text,
        value_ci -> Text,
    }
}

diesel::joinable!(api_tokens -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    api_tokens,
    audit_events,
    scim_users,
    scim_groups,
    scim_group_members,
    scim_values,
);
