import Foundation
import Hummingbird

/// Seed 002's activation codes and devices: an admin creates one-time codes per tenant, a device
/// spends one for an opaque token, and admins see and deactivate their tenant's devices.
struct DevicesController {
    let devices: DevicesRepository
    let adminKey: String

    struct DeviceView: Encodable {
        let device_id: String
        let device_name: String?
        let device_model: String?
        let registered_at: Int64
        let last_sync_at: Int64?
        let is_active: Bool
        let pending_records = 0

        enum CodingKeys: CodingKey { case device_id, device_name, device_model, registered_at, last_sync_at, is_active, pending_records }

        /// Absent values are `null`, not left out: the original's clients expect every key.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(device_id, forKey: .device_id)
            try c.encode(device_name, forKey: .device_name)
            try c.encode(device_model, forKey: .device_model)
            try c.encode(registered_at, forKey: .registered_at)
            try c.encode(last_sync_at, forKey: .last_sync_at)
            try c.encode(is_active, forKey: .is_active)
            try c.encode(pending_records, forKey: .pending_records)
        }

        init(_ device: Device) {
            device_id = device.id
            device_name = device.name
            device_model = device.model
            registered_at = device.registeredAt
            last_sync_at = device.lastSyncAt
            is_active = device.isActive
        }
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/admin/activation-codes") { request, context in
            try request.requireAdmin(adminKey)
            var check = Validator(try await request.validatedObject(context: context))
            let given = check.text("code", 3...100, required: false)
            let tenantField = check.text("tenant_id", 1...50, required: false)
            let description = check.text("description", 0...500, required: false, multiline: true)
            let expiresAt = check.body["expires_at"] == nil || check.body["expires_at"] == .null ? nil : check.integer("expires_at", 1...Timestamp.validMilliseconds.upperBound)
            try check.check()
            let tenant: String
            let code: String
            if let given {
                tenant = String(given.prefix { $0 != "-" })
                guard given.contains("-"), Self.isTenant(tenant), !given.contains(where: \.isWhitespace) else {
                    throw APIError.invalid("code", "code must be TENANT-REST, the tenant being letters, digits or _")
                }
                if let tenantField, tenantField != tenant { throw APIError.invalid("tenant_id", "tenant_id differs from the code's prefix") }
                code = given
            } else {
                guard let tenantField, Self.isTenant(tenantField) else {
                    throw APIError.invalid("tenant_id", "give a code, or a tenant_id of letters, digits or _ to generate one")
                }
                tenant = tenantField
                code = "\(tenant)-\(Self.randomSuffix())"
            }
            guard let created = try await devices.createCode(code, tenant: tenant, description: description, expiresAt: expiresAt) else {
                throw APIError.conflict("Activation code already exists.")
            }
            return try json(created, status: .created)
        }
        router.get("api/admin/activation-codes") { request, _ in
            try request.requireAdmin(adminKey)
            return try json(["codes": try await devices.codes(tenant: try request.adminTenant())])
        }

        router.post("api/devices/register") { request, context in
            var check = Validator(try await request.validatedObject(context: context))
            let code = check.text("activation_code", 1...100)
            let id = check.text("device_id", 1...100)
            let device = DevicesRepository.NewDevice(
                device: id ?? "", name: check.text("device_name", 0...200, required: false), model: check.text("device_model", 0...200, required: false),
                manufacturer: check.text("device_manufacturer", 0...200, required: false), androidVersion: check.text("android_version", 0...50, required: false)
            )
            try check.check()
            let token = KeyFile.randomToken()
            let (tenant, registeredAt) = try await devices.register(device, code: code!, token: token)
            // Tokens do not expire: `token_expires_at` is there, and null, as the original sent it.
            let data: [String: JSONValue] = [
                "device_id": .string(id!), "tenant_id": .string(tenant), "device_token": .string(token), "token_expires_at": .null,
                "is_active": .bool(true), "registered_at": .int(registeredAt),
            ]
            return try json(["success": .bool(true), "data": JSONValue.object(data)], status: .created)
        }
        router.get("api/devices/status") { request, _ in
            let device = try await request.device(devices)
            return try json(DeviceView(device))
        }

        router.get("api/admin/devices") { request, _ in
            try request.requireAdmin(adminKey)
            return try json(["devices": try await devices.devices(tenant: try request.adminTenant()).map(DeviceView.init)])
        }
        router.put("api/admin/devices/{deviceId}/deactivate") { request, context in
            try request.requireAdmin(adminKey)
            let tenant = try request.adminTenant()
            let id = try context.pathID("deviceId")
            let reason = await request.reason(context: context)
            guard try await devices.deactivate(id, tenant: tenant, reason: reason) else { throw APIError.notFound("Device not found.") }
            return try json(SuccessMessage(message: "Device deactivated."))
        }
    }

    static func isTenant(_ text: String) -> Bool {
        (1...50).contains(text.count) && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    /// Eight characters from an alphabet without look-alikes.
    static func randomSuffix() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<8).map { _ in alphabet.randomElement(using: &generator)! })
    }
}

/// `{"success": true, "message": …}`, the original's acknowledgement.
struct SuccessMessage: Encodable {
    let success = true
    let message: String
}
