import Foundation
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Where a webhook may be sent: an http or https URL whose host resolves only to public addresses,
/// unless the server allows private networks. Checked when a subscription is saved and again before
/// every attempt (a name may resolve elsewhere later), so a webhook cannot reach internal services.
enum WebhookDestination {
    /// The URL's problem, or nil: http(s), a host, no credentials, at most 2,000 characters.
    static func problem(_ text: String) -> String? {
        guard text.utf8.count <= 2000, let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else {
            return "url must be an http or https URL of at most 2000 characters"
        }
        guard scheme == "http" || scheme == "https" else { return "url must be http or https" }
        guard let host = url.host, !host.isEmpty else { return "url has no host" }
        guard url.user == nil, url.password == nil else { return "url must not carry credentials; the signature authenticates Headcount" }
        return nil
    }

    /// Throws a `Refused` naming the address when the URL's host resolves to a loopback,
    /// link-local, private or otherwise non-public address (or does not resolve).
    static func check(_ text: String, allowPrivate: Bool) async throws {
        guard !allowPrivate else { return }
        guard let host = URLComponents(string: text)?.host else { throw Refused(reason: "url has no host") }
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let addresses = try await NIOThreadPool.singleton.runIfActive { try resolve(name) }
        guard !addresses.isEmpty else { throw Refused(reason: "\(host) does not resolve") }
        if let address = addresses.first(where: { !isPublic($0) }) {
            throw Refused(reason: "\(host) resolves to \(describe(address)), a loopback, link-local or private address; webhooks go to public addresses only")
        }
    }

    struct Refused: Error, Sendable {
        let reason: String
    }

    /// Every IPv4 (4 bytes) and IPv6 (16 bytes) address `host` resolves to.
    private static func resolve(_ host: String) throws -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { throw Refused(reason: "\(host) does not resolve") }
        defer { freeaddrinfo(first) }
        var addresses: [[UInt8]] = []
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            if let address = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET:
                    addresses.append(address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } })
                case AF_INET6:
                    addresses.append(address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } })
                default: break
                }
            }
            next = info.pointee.ai_next
        }
        return addresses
    }

    /// Whether an address is one anybody on the internet could be: not loopback, unspecified,
    /// private (RFC 1918, RFC 4193), shared (RFC 6598), link-local, multicast or reserved.
    static func isPublic(_ a: [UInt8]) -> Bool {
        if a.count == 16 {
            if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff { return isPublic(Array(a[12...])) }  // IPv4-mapped
            if a[0..<15].allSatisfy({ $0 == 0 }) { return false }  // :: and ::1
            if a[0] == 0xfe && a[1] & 0xc0 == 0x80 { return false }  // fe80::/10 link-local
            if a[0] & 0xfe == 0xfc { return false }  // fc00::/7 unique local
            if a[0] == 0xff { return false }  // multicast
            if a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b { return isPublic(Array(a[12...])) }  // 64:ff9b::/96 NAT64
            return true
        }
        guard a.count == 4 else { return false }
        switch (a[0], a[1]) {
        case (0, _), (10, _), (127, _): return false
        case (100, 64...127): return false  // shared address space
        case (169, 254): return false
        case (172, 16...31): return false
        case (192, 168): return false
        case (192, 0) where a[2] == 0: return false  // IETF protocol assignments
        case (198, 18...19): return false  // benchmarking
        default: return a[0] < 224  // multicast and reserved above
        }
    }

    private static func describe(_ a: [UInt8]) -> String {
        a.count == 4 ? a.map(String.init).joined(separator: ".") : stride(from: 0, to: 16, by: 2).map { String(Int(a[$0]) << 8 | Int(a[$0 + 1]), radix: 16) }.joined(separator: ":")
    }
}
