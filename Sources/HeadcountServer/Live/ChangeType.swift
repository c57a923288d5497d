/// Every kind of change the server publishes, by family: the `event:` names subscribers of
/// `/api/stream` see. A change is said in the transaction that makes it
/// (`Database.transaction(publishingTo:)`) and published right after its commit.
enum ChangeType: String, CaseIterable, Sendable {
    // Rooms: {room, name, inside, at}
    case roomRegister = "room.register"
    case roomUnregister = "room.unregister"
    // Sensors: {sensor, inside}, once per sensor per commit
    case sensorOccupancy = "sensor.occupancy"
    // Events: the event; {eventId}; a registration change with the counts after it
    case eventCreated = "event.created"
    case eventUpdated = "event.updated"
    case eventDeleted = "event.deleted"
    case eventRegistration = "event.registration"
    case eventCancellation = "event.cancellation"
    // A scan at the door: {checkIn, checkedInCount}
    case eventCheckIn = "event.check_in"
    // Attendance (admin key): {tenant_id, device_id, ...}
    case deviceRegistered = "device.registered"
    case deviceDeactivated = "device.deactivated"
    case attendanceSync = "attendance.sync"
    case attendanceDeleted = "attendance.deleted"
    // Reservations: {device_id, start_time, end_time}; the credential stays out
    case reservationSet = "reservation.set"
    // Places: the place; {ids} deleted (a cascade deletes its descendants too)
    case placeCreated = "place.created"
    case placeUpdated = "place.updated"
    case placeDeleted = "place.deleted"
    // Links: a doorway {sensor, from, to} or {room|device_id|eventId, place_id}; unlinked {sensor} or {room|device_id|eventId}
    case placeLinked = "place.linked"
    case placeUnlinked = "place.unlinked"
    // A doorway sensor's count moved: {sensor, places} (the places on its two sides) to read again
    case placeOccupancy = "place.occupancy"
    // Roll calls (admin key, they carry names): the roll call without its people; a mark {roll_call_id, person}; {roll_call_id, closed_at}
    case rollCallCreated = "rollcall.created"
    case rollCallMarked = "rollcall.marked"
    case rollCallClosed = "rollcall.closed"
    // Alerts: the alert (a sensor's or a place's threshold, silence, a count below zero)
    case alertRaised = "alert.raised"
    case alertCleared = "alert.cleared"
    case alertAcknowledged = "alert.acknowledged"

    /// The stream topic it belongs to.
    var topic: Topic {
        switch self {
        case .roomRegister, .roomUnregister: .rooms
        case .sensorOccupancy: .sensors
        case .eventCreated, .eventUpdated, .eventDeleted, .eventRegistration, .eventCancellation, .eventCheckIn: .events
        case .deviceRegistered, .deviceDeactivated, .attendanceSync, .attendanceDeleted: .attendance
        case .reservationSet: .reservations
        case .placeCreated, .placeUpdated, .placeDeleted, .placeLinked, .placeUnlinked, .placeOccupancy: .places
        case .rollCallCreated, .rollCallMarked, .rollCallClosed: .rollCalls
        case .alertRaised, .alertCleared, .alertAcknowledged: .alerts
        }
    }
}
