import Foundation
import Hummingbird

/// Seed 001: people-counting sensors post IN/OUT counts; occupancy now, at any instant, and over time.
struct SensorsController {
    static let maxBatch = 1000
    /// The most buckets one series answer holds.
    static let maxBuckets = 5000

    let repository: SensorsRepository
    let ingest: SensorIngest
    let retention: SensorRetention

    struct OccupancyResponse: Encodable {
        let sensor: String
        let inside: Int64
        let atInstant: String?
    }

    struct SeriesResponse: Encodable {
        let sensor: String
        let bucket: String
        let from: String
        let to: String
        let series: [SeriesPoint]
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/webhook") { request, context in
            let event = try SensorEvent(json: try await request.jsonObject(context: context))
            try retention.check(event)
            _ = try await ingest.submit([event])
            return try json(["message": "OK"])
        }
        router.post("api/webhook/batch") { request, context in
            let body = try await request.jsonObject(context: context)
            guard case .array(let items) = body["events"], (1...Self.maxBatch).contains(items.count) else {
                throw APIError.badRequest("events must be an array of 1 to \(Self.maxBatch) webhook bodies")
            }
            let events = try items.enumerated().map { index, item in
                guard case .object(let object) = item else { throw APIError.badRequest("events[\(index)]: must be a JSON object") }
                let event = try SensorEvent(json: object, index: index)
                try retention.check(event, index: index)
                return event
            }
            let accepted = try await ingest.submit(events).filter { $0 }.count
            return try json(["accepted": accepted, "duplicates": events.count - accepted])
        }
        // Hummingbird matches `/api/sensors/` here too, as the seed's clients call it.
        router.get("api/sensors") { _, _ in try json(["sensors": try await repository.sensors()]) }
        router.get("api/sensors/{sensor}/occupancy") { request, context in try await occupancy(request, context) }
        router.get("sensors/{sensor}/occupancy") { request, context in try await occupancy(request, context) }
        router.get("api/sensors/{sensor}/occupancy/series") { request, context in try await series(request, context) }
        router.get("api/sensors/{sensor}/events.csv") { request, context in try await eventsCSV(request, context) }
    }

    private func occupancy(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let sensor = try Self.sensor(context)
        if let instant = try request.instant("atInstant") {
            guard let inside = try await repository.inside(sensor: sensor, at: instant) else { throw Self.unknown }
            return try json(OccupancyResponse(sensor: sensor, inside: inside, atInstant: instant.rfc3339))
        }
        guard let inside = try await repository.inside(sensor: sensor) else { throw Self.unknown }
        return try json(OccupancyResponse(sensor: sensor, inside: inside, atInstant: nil))
    }

    private func series(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let sensor = try Self.sensor(context)
        let text = request.uri.queryParameters["bucket"].map(String.init) ?? SeriesBucket.hour.rawValue
        guard let bucket = SeriesBucket(rawValue: text) else { throw APIError.badRequest("bucket must be one of 5m, 1h, 1d") }
        let (from, to) = try Self.range(request, defaultSpan: RollupLevel.day.length)
        let start = bucket.floor(from), end = bucket.floor(to - 1) + bucket.length
        guard (end - start) / bucket.length <= Self.maxBuckets else {
            throw APIError.badRequest("at most \(Self.maxBuckets) buckets: narrow from/to or use a larger bucket")
        }
        guard try await repository.inside(sensor: sensor) != nil else { throw Self.unknown }
        let (opening, rows) = try await repository.usageRows(sensor: sensor, boundaries: Array(stride(from: start, through: end, by: Int(bucket.length))))
        let points = SeriesPoint.fold(from: start, to: end, bucket: bucket, opening: opening, rows: rows)
        return try json(
            SeriesResponse(
                sensor: sensor, bucket: bucket.rawValue,
                from: Timestamp(microseconds: start).rfc3339, to: Timestamp(microseconds: end).rfc3339, series: points
            ))
    }

    /// The events with `from <= ts < to` as CSV, streamed a page at a time, with the adjustments
    /// of the same span in time order among them (`kind` says which a row is).
    private func eventsCSV(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let sensor = try Self.sensor(context)
        let from = try request.instant("from")?.microseconds ?? Int64.min
        let to = try request.instant("to")?.microseconds ?? Int64.max
        guard from < to else { throw APIError.badRequest("from must be before to") }
        guard try await repository.inside(sensor: sensor) != nil else { throw Self.unknown }
        let repository = self.repository
        let adjustments = try await repository.adjustments(sensor: sensor, from: from, to: to)
        let adjustment: @Sendable (SensorAdjustment) -> [String] = { a in
            [a.at.rfc3339, sensor, "", "", "", a.kind == "reset" ? "reset" : "adjustment", String(a.inside), a.reason ?? "", a.madeBy]
        }
        let header = ["ts", "sensor", "in_count", "out_count", "id", "kind", "inside", "reason", "by"]
        return CSV.stream(filename: "\(sensor.slug(or: "sensor"))-events.csv", header: header) { (cursor: (ts: Int64, seq: Int64, adjustments: Int)?) in
            let page = try await repository.events(sensor: sensor, from: from, to: to, after: cursor.map { ($0.ts, $0.seq) }, limit: 2000)
            var next = cursor?.adjustments ?? 0
            var rows: [[String]] = []
            for stored in page {
                let e = stored.event
                while next < adjustments.count, adjustments[next].at <= e.ts {
                    rows.append(adjustment(adjustments[next]))
                    next += 1
                }
                rows.append([e.ts.rfc3339, e.sensor, String(e.inCount), String(e.outCount), e.id ?? "", "event", "", "", ""])
            }
            guard let last = page.last else { return (adjustments[next...].map(adjustment), nil) }
            return (rows, (last.event.ts.microseconds, last.seq, next))
        }
    }

    static let unknown = APIError.notFound("sensor not found")

    /// The `{sensor}` path parameter, percent-decoded.
    static func sensor(_ context: AppRequestContext) throws -> String {
        try context.pathText("sensor", length: 1...SensorEvent.maxSensorLength)
    }

    /// `from` and `to`: `to` defaults to now, `from` to `defaultSpan` before `to`. Both keep a
    /// day from the ends of years 0001-9999, so that every bucket around them is an instant too.
    static func range(_ request: Request, defaultSpan: Int64) throws -> (Int64, Int64) {
        let to = try request.instant("to")?.microseconds ?? Timestamp.now().microseconds
        let from = try request.instant("from")?.microseconds ?? (to - defaultSpan)
        guard from < to else { throw APIError.badRequest("from must be before to") }
        let day = SeriesBucket.day.length, valid = Timestamp.validMicroseconds
        guard from >= valid.lowerBound + day, to <= valid.upperBound - day else {
            throw APIError.badRequest("from and to must lie between 0001-01-02 and 9999-12-30")
        }
        return (from, to)
    }
}
