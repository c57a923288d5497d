import Hummingbird

/// `/`, `/health` and `/metrics` (request metrics, then the domain gauges).
struct SystemController {
    let database: any Database
    let metrics: DomainMetrics
    /// Gauges of this instance alone, not read from the database.
    let instanceGauges: @Sendable () -> [Gauge]

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
            // The instance's own figures are worth scraping while the database is away.
            let domain = try? await metrics.render()
            var up = Gauge("headcount_database_up", "Whether the database answered this scrape.")
            up.add(domain == nil ? 0 : 1)
            body.writeString(([up] + instanceGauges()).map(\.text).joined())
            body.writeString(domain ?? "")
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: body))
        }
    }
}
