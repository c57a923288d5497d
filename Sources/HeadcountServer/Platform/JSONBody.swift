import Foundation
import Hummingbird

/// A parsed JSON document. Routes read bodies as values rather than decoding straight into
/// Codable types so that each family can answer with the originals' exact messages and statuses.
/// Bodies are read by `JSONParser`, bounded in depth and linear in cost.
public enum JSONValue: Sendable, Equatable, Encodable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

extension Request {
    /// The body as a JSON value; malformed or too deeply nested JSON is a 400. Reading past the
    /// body limit throws `NIOTooManyBytesError`, which the error middleware answers with 413.
    public func jsonValue(context: AppRequestContext) async throws -> JSONValue {
        let buffer = try await self.body.collect(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("request body must be a JSON object") }
        do {
            return try JSONParser.parse(buffer)
        } catch {
            throw APIError.badRequest(error.message)
        }
    }

    /// The body as a JSON object; anything else is a 400.
    public func jsonObject(context: AppRequestContext) async throws -> [String: JSONValue] {
        guard case .object(let object) = try await jsonValue(context: context) else {
            throw APIError.badRequest("request body must be a JSON object")
        }
        return object
    }
}

/// Encodes a response body as JSON with the given status.
public func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    json(bytes: try jsonBytes(value), status: status)
}

/// An answer of JSON already encoded.
func json(bytes: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: bytes))
}

/// A value as JSON text, keys sorted (`JSONWriter`).
func jsonBytes<T: Encodable>(_ value: T) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONWriter.encode(value))
}

/// An optional property that encodes as `null` when absent instead of being left out (synthesized
/// `Encodable` omits nil): answers keep every key their document lists.
@propertyWrapper
struct Nullable<Value: Encodable & Sendable>: Encodable, Sendable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value = wrappedValue { try container.encode(value) } else { try container.encodeNil() }
    }
}

extension Nullable: Equatable where Value: Equatable {}
