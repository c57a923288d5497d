import Crypto
import Foundation

/// AWS Signature Version 4 for S3 requests, in the header form with a hashed payload
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
struct SigV4: Sendable {
    let accessKey: String
    let secretKey: String
    /// Temporary credentials (`AWS_SESSION_TOKEN`) are signed with their token.
    let sessionToken: String?
    let region: String
    let service = "s3"

    /// The headers to send with a request: `x-amz-date`, `x-amz-content-sha256`, the session token if
    /// any and `authorization`. `path` is the already encoded path; `query` and `headers` are raw.
    func sign(
        method: String, host: String, path: String, query: [(String, String)] = [],
        headers: [(String, String)] = [], payloadHash: String, date: Date
    ) -> [(String, String)] {
        let (amzDate, day) = Self.timestamps(date)
        var added = [("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)]
        if let sessionToken { added.append(("x-amz-security-token", sessionToken)) }
        let canonicalHeaders = (headers + added + [("host", host)])
            .map { (name: $0.0.lowercased(), value: $0.1.split(whereSeparator: \.isWhitespace).joined(separator: " ")) }
            .sorted { $0.name < $1.name }
        let signedHeaders = canonicalHeaders.map(\.name).joined(separator: ";")
        let canonicalQuery =
            query
            .map { (Self.encode($0.0), Self.encode($0.1)) }
            .sorted { $0 < $1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
        let canonicalRequest = [
            method, path, canonicalQuery,
            canonicalHeaders.map { "\($0.name):\($0.value)\n" }.joined(),
            signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hexSHA256(Data(canonicalRequest.utf8))].joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(secretKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return added + [("authorization", "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope),SignedHeaders=\(signedHeaders),Signature=\(signature)")]
    }

    /// URI-encodes everything but RFC 3986's unreserved characters (and `/` when `keepSlash`), the
    /// way SigV4 wants it in canonical requests and, for S3, in the request path itself.
    static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                encoded += "/"
            default:
                encoded += String(format: "%%%02X", byte)
            }
        }
        return encoded
    }

    static func hexSHA256<D: DataProtocol>(_ data: D) -> String { hex(SHA256.hash(data: data)) }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// `20130524T000000Z` and `20130524`, in UTC.
    static func timestamps(_ date: Date) -> (String, String) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var t = tm()
        gmtime_r(&seconds, &t)
        let day = String(format: "%04d%02d%02d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday)
        return (day + String(format: "T%02d%02d%02dZ", t.tm_hour, t.tm_min, t.tm_sec), day)
    }
}
