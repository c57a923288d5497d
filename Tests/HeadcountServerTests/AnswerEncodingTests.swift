import CompressNIO
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import HeadcountServer

/// Conditional and compressed answers: an ETag on every GET answered in one piece, 304 when the
/// client has it already, gzip when it asks and the body is large.
@Suite("Answer encoding") struct AnswerEncodingTests {
    @Test(arguments: Engine.available)
    func listsAreRevalidatedAndCompressed(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for i in 0..<40 {
                #expect(try await client.post("/events", jsonText(EventsTests.event("e\(i)"))).status == .created)
            }
            let first = try await client.get("/events")
            let tag = try #require(first.headers[.eTag])
            #expect(tag.hasPrefix("\"") && tag.count == 26)
            #expect(try await client.get("/events").headers[.eTag] == tag, "the same answer, the same tag")

            let cached = try await client.get("/events", headers: [.ifNoneMatch: "\"other\", W/\(tag)"])
            #expect(cached.status == .notModified && cached.body.readableBytes == 0 && cached.headers[.eTag] == tag)
            #expect(cached.headers[.contentType] == first.headers[.contentType])

            // The dashboard's page revalidated keeps its own security policy, not the locked-down
            // one of answers that are not pages (a browser applies a 304's headers to what it cached).
            let page = try await client.get("/dashboard")
            let revalidatedPage = try await client.get("/dashboard", headers: [.ifNoneMatch: try #require(page.headers[.eTag])])
            #expect(revalidatedPage.status == .notModified)
            #expect(revalidatedPage.headers[.contentSecurityPolicy] == page.headers[.contentSecurityPolicy])
            #expect(try await client.get("/events", headers: [.ifNoneMatch: "\"other\""]).status == .ok)
            #expect(try await client.post("/events", jsonText(EventsTests.event("e40"))).status == .created)
            let moved = try await client.get("/events", headers: [.ifNoneMatch: tag])
            #expect(moved.status == .ok && moved.headers[.eTag] != tag, "a change moves the tag")

            let gzipped = try await client.get("/events", headers: [.acceptEncoding: "br;q=1, gzip;q=0.5"])
            #expect(gzipped.headers[.contentEncoding] == "gzip" && gzipped.headers[values: .vary].contains("Accept-Encoding"))
            #expect(gzipped.body.readableBytes < moved.body.readableBytes / 4)
            var compressed = gzipped.body
            let unzipped = try compressed.decompress(with: .gzip())
            #expect(unzipped == moved.body, "the same bytes once unzipped")
            #expect(try await client.get("/events", headers: [.acceptEncoding: "gzip"]).body == gzipped.body, "compressed once, then from memory")
            let gzipTag = try #require(gzipped.headers[.eTag])
            #expect(gzipTag != moved.headers[.eTag] && gzipTag.hasSuffix("-gzip\""), "each encoding has its own tag")
            let revalidated = try await client.get("/events", headers: [.acceptEncoding: "gzip", .ifNoneMatch: gzipTag])
            #expect(revalidated.status == .notModified && revalidated.headers[values: .vary].contains("Accept-Encoding"))
            #expect(try await client.get("/events", headers: [.ifNoneMatch: gzipTag]).status == .ok, "the plain form is another representation")

            #expect(try await client.get("/events", headers: [.acceptEncoding: "gzip;q=0"]).headers[.contentEncoding] == nil)
            #expect(try await client.get("/health", headers: [.acceptEncoding: "gzip"]).headers[.contentEncoding] == nil, "small answers go as they are")
            #expect(try await client.get("/events/e1/registrations.csv").headers[.eTag] == nil, "a stream is not held back to hash it")
            #expect(try await client.get("/events/nope").headers[.eTag] == nil, "errors have no tag")
        }
    }

    @Test func headerRules() {
        #expect(AnswerEncoding.acceptsGzip("gzip, deflate"))
        #expect(AnswerEncoding.acceptsGzip("*"))
        #expect(!AnswerEncoding.acceptsGzip("gzip;q=0, br"))
        #expect(!AnswerEncoding.acceptsGzip("gzip;q=0, *"), "a refusal of gzip is not undone by *")
        #expect(!AnswerEncoding.acceptsGzip("identity"))
        #expect(!AnswerEncoding.acceptsGzip(nil))
        #expect(AnswerEncoding.matches("*", "\"a\""))
        #expect(AnswerEncoding.matches("\"b\", W/\"a\"", "\"a\""))
        #expect(!AnswerEncoding.matches("\"b\"", "\"a\""))
    }
}
