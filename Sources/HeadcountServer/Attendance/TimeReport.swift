import Hummingbird
import SQLKit

/// Time and attendance: per worker and local day, the first entry, the last exit and the time
/// inside, from entry/exit pairs in time order. An entry followed by another entry, or still open
/// at the end, is unpaired; so is an exit without an entry: flagged and counted, never guessed.
/// A pair across midnight is split between its days. Records up to a day either side of the
/// period pair with those inside it.
struct WorkerDay: Encodable, Sendable, Equatable {
    let employeeID: String
    let date: String
    @Nullable var firstEntry: String?
    @Nullable var lastExit: String?
    var insideSeconds: Int64 = 0
    var pairs = 0
    var unpairedEntries = 0
    var unpairedExits = 0

    enum CodingKeys: String, CodingKey {
        case date, pairs
        case employeeID = "employee_id"
        case firstEntry = "first_entry"
        case lastExit = "last_exit"
        case insideSeconds = "inside_seconds"
        case unpairedEntries = "unpaired_entries"
        case unpairedExits = "unpaired_exits"
    }

    static let csvHeader = ["employee_id", "date", "first_entry", "last_exit", "inside_seconds", "pairs", "unpaired_entries", "unpaired_exits"]
    var csvRow: [String] {
        [employeeID, date, firstEntry ?? "", lastExit ?? "", String(insideSeconds), String(pairs), String(unpairedEntries), String(unpairedExits)]
    }
}

/// All workers on one local day: how many were inside at all, and their time together.
struct DayTotal: Encodable, Sendable {
    let date: String
    @Nullable var workers: Int64?
    @Nullable var insideSeconds: Int64?
    var suppressed = false

    enum CodingKeys: String, CodingKey {
        case date, workers, suppressed
        case insideSeconds = "inside_seconds"
    }
}

enum TimeReport {
    static let maxRecords = 200_000
    static let margin: Int64 = 86_400_000_000

    /// The report of `records` (one tenant's, in time order) over the local days of `period`.
    static func days(_ records: [(employee: String, type: String, at: Int64)], period: ReportPeriod) -> [WorkerDay] {
        let bounds = period.boundaries
        let (start, end) = (bounds.first!, bounds.last!)
        var days: [String: WorkerDay] = [:]
        // Time inside in microseconds, made whole seconds once per day.
        var micros: [String: Int64] = [:]
        func day(_ employee: String, _ instant: Int64) -> (key: String, index: Int)? {
            guard instant >= start, instant < end else { return nil }
            var (low, high) = (0, bounds.count - 1)
            while high - low > 1 {
                let mid = (low + high) / 2
                if bounds[mid] <= instant { low = mid } else { high = mid }
            }
            let date = period.zone.day(at: bounds[low])
            let key = employee + "\u{0}" + date
            if days[key] == nil { days[key] = WorkerDay(employeeID: employee, date: date) }
            return (key, low)
        }
        for (employee, records) in Dictionary(grouping: records, by: \.employee) {
            var open: Int64?
            for record in records {
                if record.type == "ENTRY" {
                    if let previous = open, let d = day(employee, previous) { days[d.key]!.unpairedEntries += 1 }
                    open = record.at
                    if let d = day(employee, record.at), days[d.key]!.firstEntry == nil { days[d.key]!.firstEntry = period.zone.rfc3339(record.at) }
                } else {
                    if let d = day(employee, record.at) {
                        days[d.key]!.lastExit = period.zone.rfc3339(record.at)
                        if open == nil { days[d.key]!.unpairedExits += 1 }
                    }
                    guard let entered = open else { continue }
                    open = nil
                    if let d = day(employee, record.at) ?? day(employee, entered) { days[d.key]!.pairs += 1 }
                    // The pair's time, split at each local midnight it crosses.
                    var from = max(entered, start)
                    let until = min(record.at, end)
                    while from < until, let d = day(employee, from) {
                        let next = min(until, bounds[d.index + 1])
                        micros[d.key, default: 0] += next - from
                        from = next
                    }
                }
            }
            if let open, let d = day(employee, open) { days[d.key]!.unpairedEntries += 1 }
        }
        for (key, inside) in micros { days[key]!.insideSeconds = inside / 1_000_000 }
        return days.values.sorted { ($0.employeeID, $0.date) < ($1.employeeID, $1.date) }
    }

    /// Each day's totals across workers; a day with 1 to k-1 workers is withheld.
    static func totals(_ days: [WorkerDay], period: ReportPeriod, privacy: Privacy) -> [DayTotal] {
        let byDate = Dictionary(grouping: days, by: \.date)
        return period.boundaries.dropLast().map { period.zone.day(at: $0) }.map { (date: String) -> DayTotal in
            let workers = (byDate[date] ?? []).filter { $0.insideSeconds > 0 || $0.pairs > 0 }
            guard !privacy.hides(people: Int64(workers.count)) else { return DayTotal(date: date, suppressed: true) }
            return DayTotal(date: date, workers: Int64(workers.count), insideSeconds: workers.reduce(0) { $0 + $1.insideSeconds })
        }
    }
}

extension RecordsRepository {
    /// A tenant's live records from a day before `from` to a day after `to`, in time order.
    func timeRecords(tenant: String, employee: String?, from: Int64, to: Int64) async throws -> [(employee: String, type: String, at: Int64)] {
        let filter: SQLQueryString = employee.map { "AND employee_id = \(bind: $0)" } ?? ""
        let rows = try await database.read { db in
            try await db.raw(
                """
                SELECT employee_id, type, timestamp_ms FROM attendance_records
                WHERE tenant_id = \(bind: tenant) AND deleted_us IS NULL \(filter)
                    AND timestamp_ms >= \(bind: (from - TimeReport.margin) / 1000) AND timestamp_ms < \(bind: (to + TimeReport.margin) / 1000)
                ORDER BY timestamp_ms, server_id LIMIT \(literal: TimeReport.maxRecords + 1)
                """
            ).all()
        }
        guard rows.count <= TimeReport.maxRecords else {
            throw APIError.badRequest("more than \(TimeReport.maxRecords) records in the period: narrow from/to or name an employee_id")
        }
        return try rows.map {
            (try $0.decode(column: "employee_id", as: String.self), try $0.decode(column: "type", as: String.self), try $0.decode(column: "timestamp_ms", as: Int64.self) * 1000)
        }
    }
}

extension RecordsController {
    func addReportRoutes(to router: Router<AppRequestContext>) {
        router.get("api/admin/attendance/report") { request, _ in
            let (tenant, period, days) = try await report(request)
            struct Report: Encodable {
                let tenant_id: String
                let tz: String
                let from: String
                let to: String
                let days: [WorkerDay]
                let totals: [DayTotal]
                /// True when the privacy switch withheld the per-worker days.
                let suppressed: Bool
            }
            let hidden = privacy.k != nil
            return try json(
                Report(
                    tenant_id: tenant, tz: period.zone.name, from: period.from, to: period.to, days: hidden ? [] : days,
                    totals: TimeReport.totals(days, period: period, privacy: privacy), suppressed: hidden))
        }
        router.get("api/admin/attendance/report.csv") { request, _ in
            let (_, _, days) = try await report(request)
            // One person per row: the privacy switch withholds every row.
            let rows = [WorkerDay.csvHeader] + (privacy.k == nil ? days.map(\.csvRow) : [])
            return CSV.response(filename: "attendance-report.csv", body: ResponseBody(byteBuffer: ByteBuffer(string: rows.map(CSV.row).joined())))
        }
    }

    private func report(_ request: Request) async throws -> (String, ReportPeriod, [WorkerDay]) {
        try request.requireAdmin(adminKey)
        let tenant = try request.adminTenant()
        let employee = try request.text("employee_id", length: 1...200)
        let period = try request.reportPeriod(defaultUnit: .day, units: [.day])
        let records = try await records.timeRecords(tenant: tenant, employee: employee, from: period.boundaries.first!, to: period.boundaries.last!)
        return (tenant, period, TimeReport.days(records, period: period))
    }
}
