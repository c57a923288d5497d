import Hummingbird

/// `/`, `/health` and `/metrics` (request metrics, then the domain gauges).
struct SystemController {
    let database: any Database
    let feed: ChangeFeed

    static let version = "0.1.0"

    struct Info: Encodable {
        let name = "Headcount"
        let version = SystemController.version
        let description = "Who, and how many, are where — now and at any past instant — and who may come in next."
        let links = ["docs": "/docs", "openapi": "/openapi.json", "dashboard": "/dashboard", "health": "/health", "metrics": "/metrics"]
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/") { _, _ in try json(Info()) }
        router.get("health") { _, _ in
            await database.isHealthy()
                ? try json(["status": "healthy"])
                : try json(["status": "unhealthy", "error": "database unavailable", "detail": "database unavailable"], status: .serviceUnavailable)
        }
        router.get("metrics") { _, _ in
            var body = ByteBuffer(bytes: PrometheusMetrics.registry.emitToBuffer())
            body.writeString(try await DomainMetrics(database: database, feed: feed).render())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: body))
        }
    }
}
