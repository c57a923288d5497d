/// What a webhook subscription can ask for: the outbound catalogue. A change names its subjects
/// (sensor, room, event, device, place) so that a subscription filtered to a place or a sensor
/// gets only what touches it.
enum WebhookEvent: String, CaseIterable, Sendable, Codable {
    case roomPersonRegistered = "room.person_registered"
    case roomPersonUnregistered = "room.person_unregistered"
    /// A state, not an event: under a burst a subscriber gets each sensor's latest count.
    case sensorOccupancyChanged = "sensor.occupancy_changed"
    case eventRegistrationCreated = "event.registration_created"
    case eventRegistrationConfirmed = "event.registration_confirmed"
    case eventRegistrationWaitlisted = "event.registration_waitlisted"
    case eventRegistrationPromoted = "event.registration_promoted"
    case eventRegistrationCancelled = "event.registration_cancelled"
    case eventCheckedIn = "event.checked_in"
    case attendanceRecordCreated = "attendance.record_created"
    case attendanceRecordDeleted = "attendance.record_deleted"
    case deviceDeactivated = "device.deactivated"
    case reservationSet = "reservation.set"
    case alertRaised = "alert.raised"
    case alertCleared = "alert.cleared"
    case rollCallCreated = "rollcall.created"
    case rollCallMarked = "rollcall.marked"
    case rollCallClosed = "rollcall.closed"
    /// Sent only by `POST /api/webhooks/{id}/test`.
    case webhookTest = "webhook.test"
}

/// One outbound change, written to the outbox in the transaction that made it.
struct OutboundEvent: Sendable {
    let type: WebhookEvent
    /// `data` in the delivered body: encoded only if some subscription wants it.
    private let payload: any Encodable & Sendable
    var data: String { (try? jsonBytes(payload)).map { String(buffer: $0) } ?? "{}" }
    var sensor: String?
    var room: String?
    var eventID: String?
    var deviceID: String?
    var placeID: String?
    /// A sensor's count, for `sensor.occupancy_changed`.
    var count: Int64?

    init(
        _ type: WebhookEvent, _ data: some Encodable & Sendable, sensor: String? = nil, room: String? = nil, eventID: String? = nil, deviceID: String? = nil,
        placeID: String? = nil, count: Int64? = nil
    ) {
        self.type = type
        self.payload = data
        self.sensor = sensor
        self.room = room
        self.eventID = eventID
        self.deviceID = deviceID
        self.placeID = placeID
        self.count = count
    }
}
