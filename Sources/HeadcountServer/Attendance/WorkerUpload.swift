import Foundation
import Hummingbird
import MultipartKit

/// A worker's registration form, `multipart/form-data` with a `personal_data_json` part and 1–7
/// `images`. It is parsed as the body streams in, so an oversized image is refused once it passes
/// 5 MiB instead of after the whole body has arrived.
struct WorkerUpload {
    struct Image {
        let bytes: ByteBuffer
        let contentType: String
        let fileExtension: String
    }

    static let maxImages = 7
    static let maxImageBytes = 5 << 20
    static let maxTextBytes = 64 << 10
    /// Seven images at their limit plus the form's text: the contract's largest valid form.
    static let maxBodyBytes = maxImages * maxImageBytes + (1 << 20)

    let personalData: [String: JSONValue]
    let images: [Image]

    static func read(_ request: Request) async throws -> WorkerUpload {
        guard let boundary = boundary(request.headers[.contentType]) else {
            throw APIError.badRequest("body must be multipart/form-data with a boundary")
        }
        let form = Form(boundary: boundary)
        var total = 0
        for try await chunk in request.body {
            total += chunk.readableBytes
            guard total <= maxBodyBytes else { throw APIError(.contentTooLarge, "a worker form may be at most \(maxBodyBytes >> 20) MiB") }
            try form.feed(chunk)
        }
        return try WorkerUpload(parts: form.parts)
    }

    private init(parts: [(name: String, body: ByteBuffer)]) throws {
        guard let text = parts.first(where: { $0.name == "personal_data_json" })?.body else {
            throw APIError.invalid("personal_data_json", "personal_data_json is required")
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            throw APIError.badRequest("personal_data_json: \(error.message)")
        }
        guard case .object(let personalData) = value else { throw APIError.invalid("personal_data_json", "personal_data_json must be a JSON object") }
        let images = parts.filter { $0.name == "images" }
        guard (1...Self.maxImages).contains(images.count) else {
            throw APIError.invalid("images", "send 1 to \(Self.maxImages) images")
        }
        self.personalData = personalData
        self.images = try images.enumerated().map { index, part in
            guard let (type, ext) = Self.imageType(part.body) else {
                throw APIError.invalid("images[\(index)]", "images[\(index)] is not a JPEG or PNG image")
            }
            return Image(bytes: part.body, contentType: type, fileExtension: ext)
        }
    }

    /// The type an image's first bytes prove, whatever the client declared.
    static func imageType(_ bytes: ByteBuffer) -> (String, String)? {
        let head = bytes.getBytes(at: bytes.readerIndex, length: min(8, bytes.readableBytes)) ?? []
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return ("image/jpeg", "jpg") }
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], bytes.readableBytes > 8 { return ("image/png", "png") }
        return nil
    }

    /// The `boundary` parameter of a `multipart/form-data` content type.
    static func boundary(_ contentType: String?) -> String? {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        return parameter("boundary", of: contentType).flatMap { (1...70).contains($0.count) ? $0 : nil }
    }

    /// A `name=value` or `name="value"` parameter of a header value.
    static func parameter(_ name: String, of header: String) -> String? {
        for item in header.split(separator: ";").dropFirst() {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == name else { continue }
            let value = pair[1].trimmingCharacters(in: .whitespaces)
            return value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") ? String(value.dropFirst().dropLast()) : value
        }
        return nil
    }

    /// Collects the parts of a form, each up to its size limit. Parts other than the form's two
    /// are skipped without being kept.
    private final class Form {
        private let parser: MultipartParser
        private(set) var parts: [(name: String, body: ByteBuffer)] = []
        private var name: String?
        private var body = ByteBuffer()
        private var oversized: String?

        init(boundary: String) {
            parser = MultipartParser(boundary: boundary)
            parser.onHeader = { [unowned self] header, value in
                if header.lowercased() == "content-disposition" { name = WorkerUpload.parameter("name", of: value) }
            }
            parser.onBody = { [unowned self] chunk in
                guard let name, oversized == nil else { return }
                let limit = name == "images" ? WorkerUpload.maxImageBytes : name == "personal_data_json" ? WorkerUpload.maxTextBytes : 0
                guard body.readableBytes + chunk.readableBytes <= limit else {
                    if limit > 0 { oversized = name }
                    return
                }
                body.writeBuffer(&chunk)
            }
            parser.onPartComplete = { [unowned self] in
                if let name, name == "images" || name == "personal_data_json" { parts.append((name, body)) }
                name = nil
                body = ByteBuffer()
            }
        }

        func feed(_ chunk: ByteBuffer) throws {
            do {
                try parser.execute(chunk)
            } catch {
                throw APIError.badRequest("malformed multipart body")
            }
            if let oversized {
                let limit = oversized == "images" ? "each image may be at most 5 MiB" : "\(oversized) may be at most 64 KiB"
                throw APIError(.contentTooLarge, limit)
            }
            guard parts.filter({ $0.name == "images" }).count <= WorkerUpload.maxImages else {
                throw APIError.invalid("images", "send 1 to \(WorkerUpload.maxImages) images")
            }
        }
    }
}
