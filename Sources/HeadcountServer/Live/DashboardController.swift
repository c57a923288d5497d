import Hummingbird

/// `/dashboard`: a static page, its script and its style, bundled in the binary. The page loads
/// the state over the JSON API and follows `/api/stream`.
struct DashboardController {
    let assets: [String: Asset]

    init() throws {
        assets = [
            "": Asset(contentType: "text/html; charset=utf-8", body: try Resources.load("dashboard/index.html")),
            "dashboard.js": Asset(contentType: "text/javascript; charset=utf-8", body: try Resources.load("dashboard/dashboard.js")),
            "dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: try Resources.load("dashboard/dashboard.css")),
        ]
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("dashboard") { _, _ in assets[""]!.response }
        router.get("dashboard/{file}") { _, context in
            guard let asset = assets[context.parameters.get("file") ?? ""] else { throw APIError.notFound() }
            return asset.response
        }
    }
}
