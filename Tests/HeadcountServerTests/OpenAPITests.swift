import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat
import Testing

@testable import HeadcountServer

/// The OpenAPI document is the contract: it must describe exactly the routes the router serves.
@Suite("OpenAPI") struct OpenAPITests {
    @Test func documentAndRouterAgree() async throws {
        let environment = try await TestEnvironment.make(.sqlite)
        let services = try await AppServices(configuration: environment.configuration, logger: Logger(label: "test"))
        let router = try buildRouter(services, configuration: environment.configuration)
        await services.database.close()

        let served = Set(router.routes.map { "\($0.method.rawValue) \(Self.normalise($0.path.description))" })
        let data = Data(buffer: try Resources.load("openapi.json"))
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let documented = Set(
            paths.flatMap { path, operations in
                operations.keys.filter { ["get", "post", "put", "delete", "patch"].contains($0) }.map { "\($0.uppercased()) \(path)" }
            })
        #expect(served.subtracting(documented).sorted() == [], "served but not documented")
        #expect(documented.subtracting(served).sorted() == [], "documented but not served")

        // Every operation documents its errors' shape.
        for (path, operations) in paths {
            for (method, operation) in operations {
                let responses = try #require((operation as? [String: Any])?["responses"] as? [String: Any], "\(method) \(path)")
                #expect(!responses.isEmpty)
            }
        }
    }

    /// The stream's documentation names every change type the server publishes, and the
    /// dashboard listens only for types that exist.
    @Test func everyChangeTypeIsDocumentedAndTheDashboardHearsRealOnes() throws {
        let document = String(decoding: Data(buffer: try Resources.load("openapi.json")), as: UTF8.self)
        for type in ChangeType.allCases {
            #expect(document.contains("`\(type.rawValue)`"), "\(type.rawValue) undocumented")
        }
        let script = String(decoding: Data(buffer: try Resources.load("dashboard/dashboard.js")), as: UTF8.self)
        let handled = script.matches(of: /"([a-z]+\.[a-z]+)"[(:]/).map { String($0.1) }
        #expect(!handled.isEmpty)
        #expect(Set(handled).subtracting(ChangeType.allCases.map(\.rawValue)).sorted() == [])
    }

    /// Hummingbird prints `/people/status`, `/people/logs/{date}.csv`; OpenAPI has the same form.
    static func normalise(_ path: String) -> String {
        path.hasPrefix("/") ? path : "/" + path
    }
}
