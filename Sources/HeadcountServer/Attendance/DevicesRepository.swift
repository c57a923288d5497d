import SQLKit

struct ActivationCode: Encodable, Sendable {
    let code: String
    let tenant_id: String
    let status: String
    let created_at: Int64
    @Nullable var expires_at: Int64?
    @Nullable var description: String?

    /// Absent values are `null`, not left out: the original's clients expect every key.
    enum CodingKeys: CodingKey { case code, tenant_id, status, created_at, expires_at, description }

    init(row: any SQLRow, now: Int64) throws {
        code = try row.decode(column: "code", as: String.self)
        tenant_id = try row.decode(column: "tenant_id", as: String.self)
        description = try row.decode(column: "description", as: String?.self)
        created_at = milliseconds(try row.decode(column: "created_us", as: Int64.self))
        let expires = try row.decode(column: "expires_ms", as: Int64?.self)
        expires_at = expires
        let used = try row.decode(column: "used_by_device", as: String?.self) != nil
        status = used ? "used" : (expires.map { $0 <= milliseconds(now) } ?? false) ? "expired" : "pending"
    }
}

/// A registered device, as the admin and the device itself see it.
struct Device: Sendable {
    let id: String
    let tenant: String
    let name: String?
    let model: String?
    let isActive: Bool
    let registeredAt: Int64
    let lastSyncAt: Int64?

    static let columns: SQLQueryString = "device_id, tenant_id, device_name, device_model, is_active, registered_us, last_sync_us"

    init(row: any SQLRow) throws {
        id = try row.decode(column: "device_id", as: String.self)
        tenant = try row.decode(column: "tenant_id", as: String.self)
        name = try row.decode(column: "device_name", as: String?.self)
        model = try row.decode(column: "device_model", as: String?.self)
        isActive = try row.decode(column: "is_active", as: Int64.self) == 1
        registeredAt = milliseconds(try row.decode(column: "registered_us", as: Int64.self))
        lastSyncAt = try row.decode(column: "last_sync_us", as: Int64?.self).map(milliseconds)
    }
}

/// Tenants, activation codes and devices.
struct DevicesRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed

    /// Creates a code (and its tenant on first use); nil if the code exists.
    func createCode(_ code: String, tenant: String, description: String?, expiresAt: Int64?) async throws -> ActivationCode? {
        let now = Timestamp.now().microseconds
        return try await database.transaction { db in
            try await db.raw(
                """
                INSERT INTO tenants (tenant_id, change_ms, created_us) VALUES (\(bind: tenant), 0, \(bind: now))
                ON CONFLICT (tenant_id) DO NOTHING
                """
            ).run()
            return try await db.raw(
                """
                INSERT INTO activation_codes (code, tenant_id, description, created_us, expires_ms)
                VALUES (\(bind: code), \(bind: tenant), \(bind: description), \(bind: now), \(bind: expiresAt))
                ON CONFLICT (code) DO NOTHING RETURNING code, tenant_id, description, created_us, expires_ms, used_by_device
                """
            ).first().map { try ActivationCode(row: $0, now: now) }
        }
    }

    func codes(tenant: String) async throws -> [ActivationCode] {
        let now = Timestamp.now().microseconds
        return try await database.read { db in
            try await db.raw(
                """
                SELECT code, tenant_id, description, created_us, expires_ms, used_by_device FROM activation_codes
                WHERE tenant_id = \(bind: tenant) ORDER BY created_us, code
                """
            ).all().map { try ActivationCode(row: $0, now: now) }
        }
    }

    struct NewDevice: Sendable {
        let device: String, name: String?, model: String?, manufacturer: String?, androidVersion: String?
    }

    /// Spends a code on a device, in one transaction: the code's row is claimed with a conditional
    /// `UPDATE`, so of many devices racing for one code exactly one wins. Returns the device's
    /// tenant; the token is stored only as its SHA-256.
    func register(_ device: NewDevice, code: String, token: String) async throws -> (tenant: String, registeredAt: Int64) {
        let now = Timestamp.now().microseconds
        let tenant = try await database.transaction(publishingTo: feed) { db, changes in
            guard
                let tenant = try await db.raw(
                    """
                    UPDATE activation_codes SET used_by_device = \(bind: device.device), used_us = \(bind: now)
                    WHERE code = \(bind: code) AND used_by_device IS NULL AND (expires_ms IS NULL OR expires_ms > \(bind: milliseconds(now)))
                    RETURNING tenant_id
                    """
                ).first()?.decode(column: "tenant_id", as: String.self)
            else {
                guard let row = try await db.raw("SELECT used_by_device FROM activation_codes WHERE code = \(bind: code)").first() else {
                    throw APIError.badRequest("Invalid activation code.")
                }
                throw APIError.badRequest(
                    try row.decode(column: "used_by_device", as: String?.self) != nil
                        ? "Activation code has already been used." : "Activation code has expired.")
            }
            guard
                try await db.raw(
                    """
                    INSERT INTO devices (device_id, tenant_id, token_sha256, device_name, device_model, device_manufacturer,
                        android_version, is_active, registered_us)
                    VALUES (\(bind: device.device), \(bind: tenant), \(bind: Secret.sha256Hex(token)), \(bind: device.name), \(bind: device.model),
                        \(bind: device.manufacturer), \(bind: device.androidVersion), 1, \(bind: now))
                    ON CONFLICT (device_id) DO NOTHING RETURNING device_id
                    """
                ).first() != nil
            else { throw APIError.conflict("Device ID is already registered.") }
            changes.publish(
                .deviceRegistered, ["tenant_id": JSONValue.string(tenant), "device_id": .string(device.device), "registered_at": .int(milliseconds(now))])
            return tenant
        }
        return (tenant, milliseconds(now))
    }

    /// The device a token belongs to, if any.
    func device(token: String) async throws -> Device? {
        try await database.read { db in
            try await db.raw("SELECT \(Device.columns) FROM devices WHERE token_sha256 = \(bind: Secret.sha256Hex(token))").first().map(Device.init)
        }
    }

    func devices(tenant: String) async throws -> [Device] {
        try await database.read { db in
            try await db.raw("SELECT \(Device.columns) FROM devices WHERE tenant_id = \(bind: tenant) ORDER BY registered_us, device_id")
                .all().map(Device.init)
        }
    }

    /// Deactivates a tenant's device (again is fine); false if the tenant has no such device.
    func deactivate(_ id: String, tenant: String, reason: String?) async throws -> Bool {
        try await database.transaction(publishingTo: feed) { db, changes in
            let found =
                try await db.raw(
                    """
                    UPDATE devices SET is_active = 0, deactivation_reason = \(bind: reason)
                    WHERE device_id = \(bind: id) AND tenant_id = \(bind: tenant) RETURNING device_id
                    """
                ).first() != nil
            if found {
                changes.publish(.deviceDeactivated, ["tenant_id": tenant, "device_id": id])
                changes.send(OutboundEvent(.deviceDeactivated, ["tenant_id": tenant, "device_id": id, "reason": reason], deviceID: id))
            }
            return found
        }
    }
}

extension DevicesRepository {
    /// The attendance gauges of `/metrics`.
    static func gauges(_ db: any SQLDatabase) async throws -> [Gauge] {
        var active = Gauge("headcount_tenant_active_devices", "Active devices of each tenant.")
        for row in try await db.raw("SELECT tenant_id, CAST(SUM(is_active) AS BIGINT) AS active FROM devices GROUP BY tenant_id").all() {
            active.add(try row.decode(column: "active", as: Int64.self), ("tenant", try row.decode(column: "tenant_id", as: String.self)))
        }
        return [active]
    }
}
