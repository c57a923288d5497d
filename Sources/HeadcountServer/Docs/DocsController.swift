import Foundation
import Hummingbird

/// The OpenAPI document and an offline Swagger UI for it, read once from the bundled resources.
/// A file served from the bundled resources.
struct Asset: Sendable {
    let contentType: String
    let body: ByteBuffer

    var response: Response {
        Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "public, max-age=3600"], body: .init(byteBuffer: body))
    }
}

struct DocsController {
    let openAPI: Asset
    let assets: [String: Asset]

    init() throws {
        openAPI = Asset(contentType: "application/json; charset=utf-8", body: try Resources.load("openapi.json"))
        assets = [
            "": Asset(contentType: "text/html; charset=utf-8", body: ByteBuffer(string: Self.page)),
            "swagger-ui-bundle.js": Asset(contentType: "text/javascript; charset=utf-8", body: try Resources.load("docs/swagger-ui-bundle.js")),
            "swagger-ui.css": Asset(contentType: "text/css; charset=utf-8", body: try Resources.load("docs/swagger-ui.css")),
            "LICENSE": Asset(contentType: "text/plain; charset=utf-8", body: try Resources.load("docs/LICENSE")),
        ]
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("openapi.json") { _, _ in openAPI.response }
        router.get("docs") { _, _ in assets[""]!.response }
        router.get("docs/{file}") { _, context in
            guard let asset = assets[context.parameters.get("file") ?? ""] else { throw APIError.notFound() }
            return asset.response
        }
    }

    static let page = """
        <!doctype html>
        <html lang="en">
        <head>
          <meta charset="utf-8">
          <meta name="viewport" content="width=device-width, initial-scale=1">
          <title>Headcount API</title>
          <link rel="stylesheet" href="/docs/swagger-ui.css">
        </head>
        <body>
          <div id="swagger-ui"></div>
          <script src="/docs/swagger-ui-bundle.js"></script>
          <script>
            window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
          </script>
        </body>
        </html>
        """
}

enum Resources {
    struct Missing: Error, CustomStringConvertible {
        let name: String
        var description: String { "resource \(name) is missing from the bundle" }
    }

    static func load(_ name: String) throws -> ByteBuffer {
        // bundleURL, not resourceURL: Foundation on Linux takes a bundle's `Resources` folder for its resource root.
        let url = Bundle.module.bundleURL.appendingPathComponent("Resources/\(name)")
        guard let data = FileManager.default.contents(atPath: url.path)
        else { throw Missing(name: name) }
        return ByteBuffer(bytes: data)
    }
}
