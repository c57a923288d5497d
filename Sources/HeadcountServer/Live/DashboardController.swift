import Hummingbird

/// `/dashboard`: static pages, their scripts and style, bundled in the binary: the live page and
/// the roll-call page for phones. Each loads the state over the JSON API and follows `/api/stream`.
struct DashboardController {
    let assets: [String: Asset]

    init() throws {
        assets = [
            "": Asset(contentType: "text/html; charset=utf-8", body: try Resources.load("dashboard/index.html")),
            "dashboard.js": Asset(contentType: "text/javascript; charset=utf-8", body: try Resources.load("dashboard/dashboard.js")),
            "dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: try Resources.load("dashboard/dashboard.css")),
            "roll-call.html": Asset(contentType: "text/html; charset=utf-8", body: try Resources.load("dashboard/roll-call.html")),
            "roll-call.js": Asset(contentType: "text/javascript; charset=utf-8", body: try Resources.load("dashboard/roll-call.js")),
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
