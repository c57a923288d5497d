import Foundation
import Hummingbird

/// How full a space was, in its local time: per bucket, and as the hour-of-week heatmap.
/// The same answers for a sensor and for a place (its doorways' count).
struct UtilisationController {
    let sensors: SensorsRepository
    let places: PlacesRepository
    let privacy: Privacy

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("api/sensors/{sensor}/utilisation") { request, context in
            let (sensor, period) = try await sensorPeriod(request, context, defaultUnit: .day)
            return try await answer(sensor, period, kind: "buckets") { capacity, usage in
                UtilisationReport(subject: .sensor(sensor), period: period, capacity: capacity, usage: usage, privacy: privacy)
            }
        }
        router.get("api/sensors/{sensor}/utilisation/heatmap") { request, context in
            let (sensor, period) = try await sensorPeriod(request, context, defaultUnit: .hour, units: [.hour], limit: ReportPeriod.maxHeatmapHours)
            return try await answer(sensor, period, kind: "heatmap") { capacity, usage in
                Heatmap(subject: .sensor(sensor), period: period, capacity: capacity, usage: usage, privacy: privacy)
            }
        }
        router.get("api/places/{placeId}/utilisation") { request, context in
            let (place, period) = try await placePeriod(request, context, defaultUnit: .day)
            guard let tree = try await places.subtree(of: place.id) else { throw PlacesRepository.notFound }
            let usage = try await places.usage(of: tree, boundaries: period.boundaries, now: Timestamp.now().microseconds)
            return try json(UtilisationReport(subject: .place(place.id), period: period, capacity: place.capacity, usage: usage, privacy: privacy))
        }
        router.get("api/places/{placeId}/utilisation/heatmap") { request, context in
            let (place, period) = try await placePeriod(request, context, defaultUnit: .hour, units: [.hour], limit: ReportPeriod.maxHeatmapHours)
            guard let tree = try await places.subtree(of: place.id) else { throw PlacesRepository.notFound }
            let usage = try await places.usage(of: tree, boundaries: period.boundaries, now: Timestamp.now().microseconds)
            return try json(Heatmap(subject: .place(place.id), period: period, capacity: place.capacity, usage: usage, privacy: privacy))
        }
    }

    private func sensorPeriod(
        _ request: Request, _ context: AppRequestContext, defaultUnit: LocalTime.Unit, units: [LocalTime.Unit] = LocalTime.Unit.allCases,
        limit: Int = ReportPeriod.maxBuckets
    ) async throws -> (String, ReportPeriod) {
        let sensor = try SensorsController.sensor(context)
        let period = try request.reportPeriod(defaultUnit: defaultUnit, units: units, limit: limit)
        guard try await sensors.inside(sensor: sensor) != nil else { throw SensorsController.unknown }
        return (sensor, period)
    }

    /// A place's report is in the place's time zone unless `tz` says otherwise.
    private func placePeriod(
        _ request: Request, _ context: AppRequestContext, defaultUnit: LocalTime.Unit, units: [LocalTime.Unit] = LocalTime.Unit.allCases,
        limit: Int = ReportPeriod.maxBuckets
    ) async throws -> (Place, ReportPeriod) {
        let id = try context.pathID("placeId")
        guard let place = try await places.place(id) else { throw PlacesRepository.notFound }
        return (place, try request.reportPeriod(defaultUnit: defaultUnit, units: units, zone: place.timeZone, limit: limit))
    }

    /// A sensor's report: from memory when its period is settled (it ends before now and before
    /// the sensor's latest event) and it was answered before under the same revision of the
    /// sensor's past and capacity. The version is read first, so an answer built from newer rows
    /// is only ever kept under an older version, never the other way round.
    private func answer(
        _ sensor: String, _ period: ReportPeriod, kind: String, report: @Sendable (Int64?, [Usage?]) -> some Encodable
    ) async throws -> Response {
        let capacity = try await SensorSettings.read(sensor, database: sensors.database).capacity
        let (start, end) = (period.boundaries.first!, period.boundaries.last!)
        let key = [kind, sensor, period.zone.name, period.unit.rawValue, String(start), String(end)]
        // Before a held answer: it may predate the dropping of the rows it was built from.
        try await sensors.checkKept(sensor: sensor, level: SensorsRepository.level(for: period.boundaries), from: start)
        let version = try await sensors.settledVersion(sensor: sensor, until: end).map { [$0, capacity ?? -1] }
        if let version, let held = sensors.database.caches.answers[key], held.version == version { return json(bytes: held.bytes) }
        let (opening, rows) = try await sensors.usageRows(sensor: sensor, boundaries: period.boundaries)
        let usage = Usage.fold(boundaries: period.boundaries, opening: opening, rows: rows, now: Timestamp.now().microseconds)
        let bytes = try jsonBytes(report(capacity, usage))
        if let version { sensors.database.caches.answers.store(HeldAnswer(version: version, bytes: bytes), for: key, weight: bytes.capacity) }
        return json(bytes: bytes)
    }
}

/// What a report is about: `"sensor": …` or `"place": …` in the answer.
enum ReportSubject: Sendable {
    case sensor(String)
    case place(String)

    func encode(into container: inout KeyedEncodingContainer<ReportKey>) throws {
        switch self {
        case .sensor(let id): try container.encode(id, forKey: ReportKey("sensor"))
        case .place(let id): try container.encode(id, forKey: ReportKey("place"))
        }
    }
}

/// What every utilisation answer starts with: its subject, `tz`, `from`, `to` and `capacity`.
private func encodeHead(_ subject: ReportSubject, _ period: ReportPeriod, _ capacity: Int64?, to encoder: any Encoder) throws
    -> KeyedEncodingContainer<ReportKey>
{
    var container = encoder.container(keyedBy: ReportKey.self)
    try subject.encode(into: &container)
    try container.encode(period.zone.name, forKey: ReportKey("tz"))
    try container.encode(period.from, forKey: ReportKey("from"))
    try container.encode(period.to, forKey: ReportKey("to"))
    try container.encode(capacity, forKey: ReportKey("capacity"))
    return container
}

struct ReportKey: CodingKey {
    let stringValue: String
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}

/// Figures rounded for reading: two decimals, one for a percentage.
func rounded(_ value: Double, places: Double = 100) -> Double { (value * places).rounded() / places }

/// `value` as a percentage of `capacity`, one decimal; nil without a capacity (or one of zero).
func percent(_ value: Double, of capacity: Int64?) -> Double? {
    guard let capacity, capacity > 0 else { return nil }
    return rounded(value * 100 / Double(capacity), places: 10)
}

struct UtilisationPoint: Encodable, Sendable {
    let start: String
    let end: String
    var min: Int64?
    var avg: Double?
    var peak: Int64?
    var peakAt: String?
    var avgPercent: Double?
    var peakPercent: Double?
    /// True when the privacy switch withheld the figures (fewer than k people).
    var suppressed = false

    enum CodingKeys: String, CodingKey {
        case start, end, min, avg, peak, suppressed
        case peakAt = "peak_at"
        case avgPercent = "avg_percent"
        case peakPercent = "peak_percent"
    }

    /// `peakAt`: the usage's `peakAt` written in the report's zone.
    init(start: String, end: String, usage: Usage?, peakAt: String?, capacity: Int64?, privacy: Privacy) {
        (self.start, self.end) = (start, end)
        guard let usage else { return }
        guard !privacy.hides(people: usage.peak) else {
            suppressed = true
            return
        }
        let avg = rounded(usage.average)
        (min, self.avg, peak, self.peakAt) = (usage.min, avg, usage.peak, peakAt)
        (avgPercent, peakPercent) = (percent(avg, of: capacity), percent(Double(usage.peak), of: capacity))
    }

    // Written member by member (a year of days is 366 of these): nulls as null, without the
    // generic path `@Nullable` takes.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(start, forKey: .start)
        try c.encode(end, forKey: .end)
        try c.encode(suppressed, forKey: .suppressed)
        for (key, value) in [(CodingKeys.min, min), (.peak, peak)] {
            if let value { try c.encode(value, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
        for (key, value) in [(CodingKeys.avg, avg), (.avgPercent, avgPercent), (.peakPercent, peakPercent)] {
            if let value { try c.encode(value, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
        if let peakAt { try c.encode(peakAt, forKey: .peakAt) } else { try c.encodeNil(forKey: .peakAt) }
    }
}

/// `GET …/utilisation`: one point per local bucket; a bucket not yet started has null figures.
struct UtilisationReport: Encodable, Sendable {
    let subject: ReportSubject
    let period: ReportPeriod
    let capacity: Int64?
    let buckets: [UtilisationPoint]

    init(subject: ReportSubject, period: ReportPeriod, capacity: Int64?, usage: [Usage?], privacy: Privacy) {
        self.subject = subject
        self.period = period
        self.capacity = capacity
        // Instants written in time order (each peak lies in its bucket): the zone is asked for its
        // offset only where it changes.
        let bounds = period.zone.rfc3339(period.boundaries)
        var peaks = period.zone.rfc3339(usage.compactMap { $0?.peakAt }).makeIterator()
        buckets = usage.indices.map { i in
            UtilisationPoint(
                start: bounds[i], end: bounds[i + 1], usage: usage[i], peakAt: usage[i] == nil ? nil : peaks.next(), capacity: capacity, privacy: privacy)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = try encodeHead(subject, period, capacity, to: encoder)
        try container.encode(period.unit.rawValue, forKey: ReportKey("bucket"))
        try container.encode(buckets, forKey: ReportKey("buckets"))
    }
}

/// `GET …/utilisation/heatmap`: the local hours of the week (Monday first), each the average of
/// its hours' time-weighted averages and the highest peak among them. A DST day's repeated hour
/// counts twice in its cell; its skipped hour has no sample.
struct Heatmap: Encodable, Sendable {
    struct Cell: Encodable, Sendable {
        let weekday: Int
        let hour: Int
        /// How many hours of the period fell in this cell (and had started).
        let samples: Int
        @Nullable var avg: Double?
        @Nullable var peak: Int64?
        @Nullable var avgPercent: Double?
        @Nullable var peakPercent: Double?
        let suppressed: Bool

        enum CodingKeys: String, CodingKey {
            case weekday, hour, samples, avg, peak, suppressed
            case avgPercent = "avg_percent"
            case peakPercent = "peak_percent"
        }
    }

    let subject: ReportSubject
    let period: ReportPeriod
    let capacity: Int64?
    let cells: [Cell]

    init(subject: ReportSubject, period: ReportPeriod, capacity: Int64?, usage: [Usage?], privacy: Privacy) {
        self.subject = subject
        self.period = period
        self.capacity = capacity
        var sums = Array(repeating: (total: 0.0, samples: 0, peak: Int64.min), count: 7 * 24)
        let clocks = period.zone.clocks(Array(period.boundaries.dropLast()))
        for (i, usage) in usage.enumerated() {
            guard let usage else { continue }
            let cell = (clocks[i].weekday - 1) * 24 + clocks[i].hour
            sums[cell].total += usage.average
            sums[cell].samples += 1
            sums[cell].peak = Swift.max(sums[cell].peak, usage.peak)
        }
        cells = sums.enumerated().map { i, sum in
            let hidden = sum.samples > 0 && privacy.hides(people: sum.peak)
            var cell = Cell(weekday: i / 24 + 1, hour: i % 24, samples: sum.samples, suppressed: hidden)
            if sum.samples > 0, !hidden {
                let avg = rounded(sum.total / Double(sum.samples))
                (cell.avg, cell.peak) = (avg, sum.peak)
                (cell.avgPercent, cell.peakPercent) = (percent(avg, of: capacity), percent(Double(sum.peak), of: capacity))
            }
            return cell
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = try encodeHead(subject, period, capacity, to: encoder)
        try container.encode(cells, forKey: ReportKey("cells"))
    }
}
