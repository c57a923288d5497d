import Hummingbird

extension Request {
    /// The device a bearer token names. No or an unknown token is 401, a deactivated device 403
    /// on every device route, and an `X-Tenant-ID` other than the device's own 403.
    func device(_ devices: DevicesRepository) async throws -> Device {
        guard let token = bearerToken, let device = try await devices.device(token: token) else {
            throw APIError(.unauthorized, "a valid device token is required: Authorization: Bearer <token>")
        }
        guard device.isActive else { throw APIError(.forbidden, "Device is deactivated.") }
        if let tenant = headers[.tenantID], tenant != device.tenant { throw APIError(.forbidden, "X-Tenant-ID is not this device's tenant.") }
        return device
    }
}
