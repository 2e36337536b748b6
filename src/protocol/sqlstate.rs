//! SQLSTATE codes the pooler sends (PostgreSQL `errcodes.txt` names, as PgBouncer uses them).

/// 00000 successful_completion (notices).
pub const SUCCESSFUL_COMPLETION: &str = "00000";
/// 08000 connection_exception.
pub const CONNECTION_EXCEPTION: &str = "08000";
/// 08006 connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08P01 protocol_violation: PgBouncer's default for pooler errors.
pub(crate) const PROTOCOL_VIOLATION: &str = "08P01";
/// 0A000 feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 22023 invalid_parameter_value.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// 25P02 in_failed_sql_transaction.
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
/// 26000 invalid_sql_statement_name (prepared statement missing).
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// 28000 invalid_authorization_specification.
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
/// 28P01 invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// 3D000 invalid_catalog_name (unknown database).
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// 42501 insufficient_privilege.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// 42601 syntax_error (admin console).
pub const SYNTAX_ERROR: &str = "42601";
/// 42P05 duplicate_prepared_statement.
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// 53300 too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 53400 configuration_limit_exceeded.
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
/// 57014 query_canceled (timeouts).
pub const QUERY_CANCELED: &str = "57014";
/// 57P01 admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 57P03 cannot_connect_now.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// 58000 system_error.
pub const SYSTEM_ERROR: &str = "58000";
/// XX000 internal_error.
pub const INTERNAL_ERROR: &str = "XX000";
