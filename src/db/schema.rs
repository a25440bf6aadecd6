//! The portable schema: one definition for both backends (see diesel.toml for why it is hand-written).

diesel::table! {
    workspaces (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        hipaa -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        tracking_plan_approval -> Bool,
        access_version -> BigInt,
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
        minted_by -> Nullable<Text>,
        setup_link_id -> Nullable<Text>,
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

diesel::table! {
    member_roles (member_id, role) {
        member_id -> Text,
        workspace_id -> Text,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_mappings (workspace_id, idp_group_ci) {
        workspace_id -> Text,
        idp_group_ci -> Text,
        idp_group -> Text,
        role -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    attribute_mappings (workspace_id) {
        workspace_id -> Text,
        preset -> Nullable<Text>,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        role -> Nullable<Text>,
        groups -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    resources (id) {
        id -> Text,
        workspace_id -> Text,
        kind -> Text,
        name -> Text,
        source_id -> Nullable<Text>,
        write_key_hash -> Nullable<Binary>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    resource_labels (resource_id, label) {
        resource_id -> Text,
        workspace_id -> Text,
        label -> Text,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        workspace_id -> Text,
        subject_type -> Text,
        subject -> Text,
        resource_id -> Nullable<Text>,
        label -> Nullable<Text>,
        level -> Text,
        expires_at -> Nullable<Timestamp>,
        justification -> Nullable<Text>,
        approver -> Nullable<Text>,
        review_date -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idp_connections (workspace_id) {
        workspace_id -> Text,
        entity_id -> Text,
        sso_url -> Text,
        slo_url -> Nullable<Text>,
        metadata_url -> Nullable<Text>,
        metadata_valid_until -> Nullable<Timestamp>,
        allow_idp_initiated -> Bool,
        require_signed_response -> Bool,
        require_signed_assertion -> Bool,
        clock_skew_seconds -> Integer,
        name_id_format -> Nullable<Text>,
        force_authn -> Bool,
        jit -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    idp_certificates (workspace_id, fingerprint) {
        workspace_id -> Text,
        fingerprint -> Text,
        subject -> Text,
        not_after -> Timestamp,
        der -> Binary,
    }
}

diesel::table! {
    saml_sign_in_traces (id) {
        id -> BigInt,
        workspace_id -> Text,
        occurred_at -> Timestamp,
        outcome -> Text,
        detail -> Nullable<Text>,
        email -> Nullable<Text>,
        attributes -> Text,
        response -> Text,
        signed -> Bool,
        client -> Nullable<Text>,
    }
}

diesel::table! {
    console_links (id) {
        id -> Text,
        kind -> Text,
        workspace_id -> Text,
        email -> Nullable<Text>,
        secret_hash -> Binary,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sp_keys (workspace_id, purpose) {
        workspace_id -> Text,
        purpose -> Text,
        private_key_pem -> Text,
        certificate_der -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    saml_requests (id) {
        id -> Text,
        workspace_id -> Text,
        browser_hash -> Binary,
        relay_path -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    saml_assertions_seen (idp_entity_id, assertion_id) {
        idp_entity_id -> Text,
        assertion_id -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    saml_member_groups (member_id, group_name) {
        member_id -> Text,
        group_name -> Text,
    }
}

diesel::table! {
    session_keys (kid) {
        kid -> Text,
        private_key_pem -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        email -> Text,
        workspace_id -> Text,
        member_id -> Text,
        name_id -> Text,
        session_index -> Nullable<Text>,
        created_at -> Timestamp,
        idp_expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(api_tokens -> workspaces (workspace_id));
diesel::table! {
    replicas (id) {
        id -> Text,
        seen_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    api_tokens,
    audit_events,
    scim_users,
    scim_groups,
    scim_group_members,
    scim_values,
    member_roles,
    group_mappings,
    attribute_mappings,
    resources,
    resource_labels,
    grants,
    idp_connections,
    idp_certificates,
    sp_keys,
    saml_requests,
    saml_assertions_seen,
    saml_member_groups,
    session_keys,
    sessions,
    replicas,
    console_links,
    saml_sign_in_traces,
);
