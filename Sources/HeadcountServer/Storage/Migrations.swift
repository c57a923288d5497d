import Logging
import SQLKit

/// A schema change, applied once, in order, on both engines.
struct Migration: Sendable {
    let version: Int
    let name: String
    let statements: @Sendable (any Database) -> [String]
}

/// The versioned schema. Append only: an applied migration is never edited.
public enum Migrations {
    static let all: [Migration] = [
        Migration(version: 1, name: "rooms") { db in
            [
                // The parent row: every action bumps `seq` under its row lock, so a room's actions
                // are numbered, and timed, in commit order even across instances.
                "CREATE TABLE rooms (room TEXT PRIMARY KEY, seq BIGINT NOT NULL, last_at_us BIGINT NOT NULL)",
                """
                CREATE TABLE room_actions (
                    id \(db.serialPrimaryKey),
                    room TEXT NOT NULL REFERENCES rooms (room),
                    seq BIGINT NOT NULL,
                    name TEXT NOT NULL,
                    action TEXT NOT NULL CHECK (action IN ('register', 'unregister')),
                    at_us BIGINT NOT NULL,
                    day TEXT NOT NULL,
                    UNIQUE (room, seq)
                )
                """,
                "CREATE INDEX room_actions_by_day ON room_actions (room, day, seq)",
                "CREATE INDEX room_actions_by_time ON room_actions (room, at_us, seq)",
                """
                CREATE TABLE room_occupants (
                    room TEXT NOT NULL,
                    name TEXT NOT NULL,
                    since_us BIGINT NOT NULL,
                    seq BIGINT NOT NULL,
                    PRIMARY KEY (room, name)
                )
                """,
                "CREATE INDEX room_occupants_by_arrival ON room_occupants (room, seq)",
            ]
        },
        Migration(version: 2, name: "reservations") { db in
            [
                // The parent row, locked by bumping `version` before a device's reservations change.
                "CREATE TABLE reservation_devices (device_id TEXT PRIMARY KEY, version BIGINT NOT NULL)",
                """
                CREATE TABLE reservations (
                    id \(db.serialPrimaryKey),
                    device_id TEXT NOT NULL REFERENCES reservation_devices (device_id),
                    start_us BIGINT NOT NULL,
                    end_us BIGINT NOT NULL,
                    credential TEXT NOT NULL,
                    created_us BIGINT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('active', 'replaced')),
                    CHECK (end_us > start_us)
                )
                """,
                "CREATE INDEX reservations_by_device ON reservations (device_id, status, start_us)",
            ]
        },
        Migration(version: 3, name: "sensors") { db in
            [
                // The parent row: current totals, updated (and so locked) in every write's transaction.
                // `prior_last_ts_us` is `last_ts_us` before the latest write: it tells that write whether
                // its events came after everything stored.
                """
                CREATE TABLE sensors (
                    sensor TEXT PRIMARY KEY,
                    inside BIGINT NOT NULL,
                    entries BIGINT NOT NULL,
                    exits BIGINT NOT NULL,
                    events BIGINT NOT NULL,
                    last_ts_us BIGINT NOT NULL,
                    prior_last_ts_us BIGINT
                )
                """,
                """
                CREATE TABLE sensor_events (
                    seq \(db.serialPrimaryKey),
                    sensor TEXT NOT NULL,
                    ts_us BIGINT NOT NULL,
                    in_count BIGINT NOT NULL CHECK (in_count >= 0),
                    out_count BIGINT NOT NULL CHECK (out_count >= 0),
                    event_id TEXT,
                    received_us BIGINT NOT NULL,
                    UNIQUE (sensor, event_id)
                )
                """,
                "CREATE INDEX sensor_events_by_time ON sensor_events (sensor, ts_us, seq)",
                // One row per sensor and UTC minute with events; `balance_before` is the prefix sum.
                """
                CREATE TABLE sensor_minutes (
                    sensor TEXT NOT NULL,
                    minute_us BIGINT NOT NULL,
                    entries BIGINT NOT NULL,
                    exits BIGINT NOT NULL,
                    balance_before BIGINT NOT NULL,
                    low BIGINT NOT NULL,
                    high BIGINT NOT NULL,
                    PRIMARY KEY (sensor, minute_us)
                )
                """,
            ]
        },
        Migration(version: 4, name: "events") { db in
            [
                // The parent row: every change to an event or its registrations first bumps `version`
                // (locking the row); `confirmed <= capacity` makes an overbooking impossible to store.
                """
                CREATE TABLE events (
                    event_id TEXT PRIMARY KEY,
                    title TEXT NOT NULL,
                    description TEXT NOT NULL,
                    date TEXT NOT NULL,
                    location TEXT NOT NULL,
                    capacity BIGINT NOT NULL CHECK (capacity BETWEEN 1 AND 100000),
                    organizer TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('active', 'scheduled', 'ongoing', 'completed', 'cancelled')),
                    has_waitlist BIGINT NOT NULL CHECK (has_waitlist IN (0, 1)),
                    confirmed BIGINT NOT NULL DEFAULT 0 CHECK (confirmed >= 0),
                    waitlisted BIGINT NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
                    version BIGINT NOT NULL DEFAULT 0,
                    last_registered_us BIGINT NOT NULL DEFAULT 0,
                    created_us BIGINT NOT NULL,
                    CHECK (confirmed <= capacity)
                )
                """,
                "CREATE TABLE users (user_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_us BIGINT NOT NULL)",
                """
                CREATE TABLE registrations (
                    event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL REFERENCES users (user_id),
                    status TEXT NOT NULL CHECK (status IN ('confirmed', 'waitlisted')),
                    registered_us BIGINT NOT NULL,
                    seq BIGINT NOT NULL,
                    PRIMARY KEY (event_id, user_id),
                    UNIQUE (event_id, seq)
                )
                """,
                "CREATE INDEX registrations_in_order ON registrations (event_id, status, registered_us, seq)",
                "CREATE INDEX registrations_by_user ON registrations (user_id)",
            ]
        },
        Migration(version: 5, name: "attendance") { db in
            [
                // The parent row: every change to a tenant's records takes the next `change_ms` under
                // its lock, so change stamps are handed out in commit order and a device that polls
                // "changes after X" can never skip one that commits late.
                "CREATE TABLE tenants (tenant_id TEXT PRIMARY KEY, change_ms BIGINT NOT NULL, created_us BIGINT NOT NULL)",
                """
                CREATE TABLE activation_codes (
                    code TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
                    description TEXT,
                    created_us BIGINT NOT NULL,
                    expires_ms BIGINT,
                    used_by_device TEXT,
                    used_us BIGINT
                )
                """,
                "CREATE INDEX activation_codes_by_tenant ON activation_codes (tenant_id, created_us)",
                """
                CREATE TABLE devices (
                    device_id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
                    token_sha256 TEXT NOT NULL UNIQUE,
                    device_name TEXT,
                    device_model TEXT,
                    device_manufacturer TEXT,
                    android_version TEXT,
                    is_active BIGINT NOT NULL CHECK (is_active IN (0, 1)),
                    deactivation_reason TEXT,
                    registered_us BIGINT NOT NULL,
                    last_sync_us BIGINT
                )
                """,
                "CREATE INDEX devices_by_tenant ON devices (tenant_id, registered_us)",
                """
                CREATE TABLE attendance_records (
                    server_id \(db.serialPrimaryKey),
                    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
                    device_id TEXT NOT NULL REFERENCES devices (device_id),
                    local_id BIGINT NOT NULL,
                    employee_id TEXT NOT NULL,
                    type TEXT NOT NULL CHECK (type IN ('ENTRY', 'EXIT')),
                    timestamp_ms BIGINT NOT NULL,
                    confidence DOUBLE PRECISION,
                    liveness_passed BIGINT,
                    created_ms BIGINT,
                    synced_us BIGINT NOT NULL,
                    change_ms BIGINT NOT NULL,
                    deleted_reason TEXT,
                    deleted_us BIGINT,
                    UNIQUE (device_id, local_id)
                )
                """,
                "CREATE INDEX attendance_by_change ON attendance_records (tenant_id, change_ms)",
                "CREATE INDEX attendance_by_employee ON attendance_records (tenant_id, employee_id, timestamp_ms)",
                """
                CREATE TABLE attendance_audits (
                    server_id \(db.serialPrimaryKey),
                    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id),
                    device_id TEXT NOT NULL REFERENCES devices (device_id),
                    local_id BIGINT NOT NULL,
                    body TEXT NOT NULL,
                    synced_us BIGINT NOT NULL,
                    UNIQUE (device_id, local_id)
                )
                """,
            ]
        },
        Migration(version: 6, name: "workers") { _ in
            [
                """
                CREATE TABLE workers (
                    worker_id TEXT PRIMARY KEY,
                    document_id TEXT NOT NULL UNIQUE,
                    first_name TEXT NOT NULL,
                    last_name TEXT NOT NULL,
                    email TEXT NOT NULL,
                    created_us BIGINT NOT NULL,
                    updated_us BIGINT NOT NULL
                )
                """,
                // The bytes live in the object store under a random key; a row names them.
                """
                CREATE TABLE worker_images (
                    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
                    position BIGINT NOT NULL,
                    object_key TEXT NOT NULL UNIQUE,
                    content_type TEXT NOT NULL,
                    byte_count BIGINT NOT NULL,
                    PRIMARY KEY (worker_id, position)
                )
                """,
                """
                CREATE TABLE worker_timestamps (
                    timestamp_id TEXT PRIMARY KEY,
                    worker_id TEXT NOT NULL REFERENCES workers (worker_id),
                    timestamp_ms BIGINT NOT NULL,
                    event_type TEXT NOT NULL CHECK (event_type IN ('entry', 'exit')),
                    created_us BIGINT NOT NULL
                )
                """,
                "CREATE INDEX worker_timestamps_by_worker ON worker_timestamps (worker_id, timestamp_ms)",
                "CREATE INDEX worker_timestamps_by_time ON worker_timestamps (timestamp_ms, timestamp_id)",
            ]
        },
        Migration(version: 7, name: "room log pending") { _ in
            [
                // The days whose CSV object may lag their rows: written in each action's transaction,
                // deleted once an object holding `seq` is stored, so a crash loses no row of the object.
                // The instance writing a day's object holds it (`owner`, until `lease_until_us`), so
                // two instances never write one object at once, nor an older version over a newer;
                // `generation` counts claims, so a writer whose claim lapsed knows its write may have
                // landed over a newer one.
                """
                CREATE TABLE room_log_pending (
                    room TEXT NOT NULL,
                    day TEXT NOT NULL,
                    seq BIGINT NOT NULL,
                    owner TEXT,
                    lease_until_us BIGINT NOT NULL DEFAULT 0,
                    generation BIGINT NOT NULL DEFAULT 0,
                    PRIMARY KEY (room, day)
                )
                """
            ]
        },
        Migration(version: 8, name: "places") { _ in
            [
                // The tree's one parent row: every change to the tree's shape locks it first, so two
                // moves racing cannot make a cycle.
                "CREATE TABLE place_tree (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
                "INSERT INTO place_tree (id, version) VALUES (1, 0)",
                """
                CREATE TABLE places (
                    place_id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    parent_id TEXT REFERENCES places (place_id),
                    time_zone TEXT NOT NULL,
                    capacity BIGINT CHECK (capacity IS NULL OR capacity >= 0),
                    created_us BIGINT NOT NULL
                )
                """,
                "CREATE INDEX places_by_parent ON places (parent_id, name)",
            ]
        },
        Migration(version: 9, name: "place links") { _ in
            [
                // A sensor is a doorway: its `in` moves people from `from_place` (null: outside)
                // into `to_place` (null: outside), its `out` the other way.
                """
                CREATE TABLE place_doorways (
                    sensor TEXT PRIMARY KEY,
                    from_place TEXT REFERENCES places (place_id),
                    to_place TEXT REFERENCES places (place_id),
                    CHECK (from_place IS NOT NULL OR to_place IS NOT NULL)
                )
                """,
                "CREATE INDEX place_doorways_from ON place_doorways (from_place)",
                "CREATE INDEX place_doorways_to ON place_doorways (to_place)",
                // A room (seed 000) lives in one place.
                "CREATE TABLE place_rooms (room TEXT PRIMARY KEY, place_id TEXT NOT NULL REFERENCES places (place_id))",
                "CREATE INDEX place_rooms_by_place ON place_rooms (place_id)",
            ]
        },
        Migration(version: 10, name: "presence") { db in
            [
                // Every link of a family's thing to a place, in one table: a room, an attendance
                // device (its records put workers there), a reservation device, an event.
                """
                CREATE TABLE place_links (
                    kind TEXT NOT NULL CHECK (kind IN ('room', 'attendance_device', 'reservation_device', 'event')),
                    link_id TEXT NOT NULL,
                    place_id TEXT NOT NULL REFERENCES places (place_id),
                    PRIMARY KEY (kind, link_id)
                )
                """,
                "CREATE INDEX place_links_by_place ON place_links (place_id, kind)",
                "INSERT INTO place_links (kind, link_id, place_id) SELECT 'room', room, place_id FROM place_rooms",
                "DROP TABLE place_rooms",
                // After this long without an exit, a registrant's or worker's presence is closed by policy.
                "ALTER TABLE places ADD COLUMN stale_after_minutes BIGINT NOT NULL DEFAULT 960",
                // Who held a reservation, where the client said (presence names them).
                "ALTER TABLE reservations ADD COLUMN holder TEXT",
                "CREATE INDEX attendance_by_device_time ON attendance_records (device_id, timestamp_ms)",
                "CREATE INDEX room_actions_by_name ON room_actions (room, name, seq)",
                // Event check-ins and check-outs, idempotent by `nonce`; `checked_in` on the event row
                // counts the people inside, kept in the check-in's transaction under the event's lock.
                "ALTER TABLE events ADD COLUMN checked_in BIGINT NOT NULL DEFAULT 0",
                """
                CREATE TABLE event_checkins (
                    id \(db.serialPrimaryKey),
                    event_id TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL,
                    type TEXT NOT NULL CHECK (type IN ('entry', 'exit')),
                    at_us BIGINT NOT NULL,
                    nonce TEXT NOT NULL,
                    created_us BIGINT NOT NULL,
                    UNIQUE (event_id, nonce)
                )
                """,
                "CREATE INDEX event_checkins_by_user ON event_checkins (event_id, user_id, id)",
                "CREATE INDEX event_checkins_by_time ON event_checkins (event_id, at_us, id)",
                // An admin's word on a presence the policy would close: when the person really left
                // (`left_us`), or null: they were there all along.
                """
                CREATE TABLE presence_corrections (
                    source TEXT NOT NULL CHECK (source IN ('room', 'attendance')),
                    source_id TEXT NOT NULL,
                    since_us BIGINT NOT NULL,
                    left_us BIGINT,
                    corrected_by TEXT NOT NULL,
                    corrected_us BIGINT NOT NULL,
                    PRIMARY KEY (source, source_id, since_us)
                )
                """,
                // A roll call: everyone named in a place at an instant, each marked safe or missing.
                """
                CREATE TABLE roll_calls (
                    roll_call_id TEXT PRIMARY KEY,
                    place_id TEXT NOT NULL,
                    place_name TEXT NOT NULL,
                    at_us BIGINT NOT NULL,
                    counted BIGINT NOT NULL,
                    created_us BIGINT NOT NULL,
                    closed_us BIGINT
                )
                """,
                """
                CREATE TABLE roll_call_people (
                    roll_call_id TEXT NOT NULL REFERENCES roll_calls (roll_call_id),
                    person_key TEXT NOT NULL,
                    name TEXT NOT NULL,
                    source TEXT NOT NULL,
                    source_id TEXT NOT NULL,
                    place_id TEXT NOT NULL,
                    since_us BIGINT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('unmarked', 'safe', 'missing')),
                    marked_by TEXT,
                    marked_us BIGINT,
                    PRIMARY KEY (roll_call_id, person_key)
                )
                """,
            ]
        },
        Migration(version: 11, name: "webhooks") { db in
            [
                // A subscription. `event_types` is ",a,b," (so one LIKE finds a type); the secret is
                // sealed with the server's secret key; during a rotation the previous one signs too.
                """
                CREATE TABLE webhooks (
                    webhook_id TEXT PRIMARY KEY,
                    url TEXT NOT NULL,
                    event_types TEXT NOT NULL,
                    filter_sensor TEXT,
                    filter_place TEXT,
                    enabled BIGINT NOT NULL CHECK (enabled IN (0, 1)),
                    secret_sealed TEXT NOT NULL,
                    previous_secret_sealed TEXT,
                    previous_until_us BIGINT,
                    disabled_reason TEXT,
                    failing_since_us BIGINT,
                    created_us BIGINT NOT NULL,
                    updated_us BIGINT NOT NULL
                )
                """,
                // The outbox: one row per outbound change, written in the change's transaction.
                """
                CREATE TABLE webhook_messages (
                    message_id \(db.serialPrimaryKey),
                    message_uid TEXT NOT NULL UNIQUE,
                    event_type TEXT NOT NULL,
                    body TEXT NOT NULL,
                    sensor TEXT,
                    room TEXT,
                    event_id TEXT,
                    device_id TEXT,
                    place_id TEXT,
                    fanned_out BIGINT NOT NULL,
                    created_us BIGINT NOT NULL
                )
                """,
                "CREATE INDEX webhook_messages_to_fan_out ON webhook_messages (fanned_out, message_id)",
                // A sensor's count is a state: each change overwrites the sensor's row, and the
                // dispatcher sends the latest at most once a second.
                "CREATE TABLE webhook_counts (sensor TEXT PRIMARY KEY, inside BIGINT NOT NULL, changed_us BIGINT NOT NULL, sent_us BIGINT)",
                "CREATE INDEX webhook_messages_by_age ON webhook_messages (created_us)",
                // A message for one subscription, attempted until it succeeds or three days pass.
                // `locked_until_us` marks an attempt in flight, so that no other instance makes one.
                """
                CREATE TABLE webhook_deliveries (
                    delivery_id \(db.serialPrimaryKey),
                    webhook_id TEXT NOT NULL,
                    message_id BIGINT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'superseded')),
                    attempts BIGINT NOT NULL,
                    next_attempt_us BIGINT NOT NULL,
                    locked_until_us BIGINT,
                    response_code BIGINT,
                    latency_ms BIGINT,
                    last_error TEXT,
                    created_us BIGINT NOT NULL,
                    updated_us BIGINT NOT NULL
                )
                """,
                "CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, status, delivery_id)",
                "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_us)",
            ]
        },
        Migration(version: 12, name: "alerts") { db in
            [
                // When a sensor last posted (its events' own times may be anything), for silence.
                "ALTER TABLE sensors ADD COLUMN received_us BIGINT",
                """
                CREATE TABLE sensor_settings (
                    sensor TEXT PRIMARY KEY,
                    capacity BIGINT CHECK (capacity IS NULL OR capacity >= 1),
                    warn_percent BIGINT NOT NULL,
                    critical_percent BIGINT NOT NULL,
                    silent_after_minutes BIGINT,
                    updated_us BIGINT NOT NULL
                )
                """,
                """
                CREATE TABLE alerts (
                    alert_id \(db.serialPrimaryKey),
                    subject TEXT NOT NULL CHECK (subject IN ('sensor', 'place')),
                    subject_id TEXT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('warn', 'critical', 'silent', 'negative')),
                    value BIGINT NOT NULL,
                    threshold BIGINT,
                    raised_us BIGINT NOT NULL,
                    cleared_us BIGINT,
                    acked_us BIGINT,
                    acked_by TEXT
                )
                """,
                "CREATE INDEX alerts_by_subject ON alerts (subject, subject_id, cleared_us)",
                "CREATE INDEX alerts_by_time ON alerts (raised_us)",
            ]
        },
        Migration(version: 13, name: "adjustments") { _ in
            [
                // Drift control: an adjustment sets a sensor's count at an instant, stored beside the
                // raw events. The sensor's row keeps its latest (`adjusted_us`) as an offset from the
                // raw count there, so that occupancy now is `inside + adjustment`.
                """
                CREATE TABLE sensor_adjustments (
                    sensor TEXT NOT NULL,
                    at_us BIGINT NOT NULL,
                    inside BIGINT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('manual', 'reset')),
                    reason TEXT,
                    made_by TEXT NOT NULL,
                    created_us BIGINT NOT NULL,
                    PRIMARY KEY (sensor, at_us)
                )
                """,
                "ALTER TABLE sensors ADD COLUMN adjustment BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE sensors ADD COLUMN adjusted_us BIGINT",
                // A daily reset to zero at a local time ("03:00") in a time zone.
                "ALTER TABLE sensor_settings ADD COLUMN reset_time TEXT",
                "ALTER TABLE sensor_settings ADD COLUMN reset_time_zone TEXT",
            ]
        },
        Migration(version: 14, name: "utilisation rollups") { _ in
            [
                // Each rollup row keeps when it reached its high (the minutes stored before this
                // migration say their minute) and its area: person-seconds its events add until the
                // row ends, so a time-weighted average is read from rows, not events.
                "ALTER TABLE sensor_minutes ADD COLUMN low_us BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE sensor_minutes ADD COLUMN high_us BIGINT NOT NULL DEFAULT 0",
                "UPDATE sensor_minutes SET low_us = minute_us, high_us = minute_us",
                "ALTER TABLE sensor_minutes ADD COLUMN area DOUBLE PRECISION NOT NULL DEFAULT 0",
                """
                UPDATE sensor_minutes SET area = COALESCE((
                    SELECT SUM((e.in_count - e.out_count) * ((sensor_minutes.minute_us + 60000000 - e.ts_us) / 1000000.0)) FROM sensor_events e
                    WHERE e.sensor = sensor_minutes.sensor AND e.ts_us >= sensor_minutes.minute_us AND e.ts_us < sensor_minutes.minute_us + 60000000), 0)
                """,
            ] + rolledUp(.hour) + rolledUp(.day)
        },
        Migration(version: 15, name: "event reports") { _ in
            [
                // When a waitlisted registration was confirmed (a waitlist conversion), and how many
                // registrations were cancelled (a cancelled one is deleted).
                "ALTER TABLE registrations ADD COLUMN promoted_us BIGINT",
                "ALTER TABLE events ADD COLUMN cancellations BIGINT NOT NULL DEFAULT 0",
            ]
        },
        Migration(version: 16, name: "sensor revisions") { _ in
            [
                // How many times a sensor's past was rewritten (a late event, an adjustment): what
                // this instance holds in memory of that past is good while this has not moved.
                "ALTER TABLE sensors ADD COLUMN revisions BIGINT NOT NULL DEFAULT 0"
            ]
        },
        Migration(version: 17, name: "sensor rollup retention") { _ in
            [
                // From when a sensor's minute and hour rows are whole, once older ones were dropped
                // (`--keep-sensor-minutes`, `--keep-sensor-hours`); NULL: all are kept. And up to
                // where each table's last sweep finished, so the next one starts there.
                "ALTER TABLE sensors ADD COLUMN minutes_from_us BIGINT",
                "ALTER TABLE sensors ADD COLUMN hours_from_us BIGINT",
                "ALTER TABLE sensors ADD COLUMN events_swept_us BIGINT",
                "ALTER TABLE sensors ADD COLUMN minutes_swept_us BIGINT",
                "ALTER TABLE sensors ADD COLUMN hours_swept_us BIGINT",
            ]
        },
        Migration(version: 18, name: "sensor event partitions") { db in
            // PostgreSQL only (`SensorPartitions`): raw events partitioned by UTC month. A partitioned
            // table's unique keys must hold its partition key, so the primary key becomes the time
            // index it replaces, and event ids move to a table of their own. Months already holding
            // events get their partitions now (those of the server's window), with this month's and
            // the next; the rest go to the default partition.
            db.engine == .sqlite
                ? []
                : [
                    "ALTER TABLE sensor_events RENAME TO sensor_events_unpartitioned",
                    "CREATE SEQUENCE sensor_event_seq",
                    "SELECT setval('sensor_event_seq', COALESCE((SELECT MAX(seq) FROM sensor_events_unpartitioned), 0) + 1, false)",
                    """
                    CREATE TABLE sensor_events (
                        seq BIGINT NOT NULL DEFAULT nextval('sensor_event_seq'),
                        sensor TEXT NOT NULL,
                        ts_us BIGINT NOT NULL,
                        in_count BIGINT NOT NULL CHECK (in_count >= 0),
                        out_count BIGINT NOT NULL CHECK (out_count >= 0),
                        event_id TEXT,
                        received_us BIGINT NOT NULL,
                        CONSTRAINT sensor_events_by_sensor_time PRIMARY KEY (sensor, ts_us, seq)
                    ) PARTITION BY RANGE (ts_us)
                    """,
                    "CREATE TABLE sensor_events_default PARTITION OF sensor_events DEFAULT",
                    """
                    DO $$
                    DECLARE
                        this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
                        m timestamp;
                    BEGIN
                        FOR m IN
                            SELECT DISTINCT date_trunc('month', to_timestamp(ts_us / 1000000.0) AT TIME ZONE 'UTC') FROM sensor_events_unpartitioned
                            UNION SELECT this_month UNION SELECT this_month + interval '1 month'
                        LOOP
                            CONTINUE WHEN m < this_month - interval '\(SensorPartitions.monthsBack) months' OR m > this_month + interval '\(SensorPartitions.monthsAhead) months';
                            EXECUTE format('CREATE TABLE %I PARTITION OF sensor_events FOR VALUES FROM (%s) TO (%s)',
                                'sensor_events_' || to_char(m, 'YYYY_MM'),
                                (extract(epoch FROM m) * 1000000)::bigint, (extract(epoch FROM m + interval '1 month') * 1000000)::bigint);
                        END LOOP;
                    END $$
                    """,
                    "INSERT INTO sensor_events SELECT seq, sensor, ts_us, in_count, out_count, event_id, received_us FROM sensor_events_unpartitioned",
                    // Dropped by time, a month at a time, with the month's partition.
                    "CREATE TABLE sensor_event_ids (sensor TEXT NOT NULL, event_id TEXT NOT NULL, ts_us BIGINT NOT NULL, PRIMARY KEY (sensor, event_id))",
                    "INSERT INTO sensor_event_ids SELECT sensor, event_id, ts_us FROM sensor_events_unpartitioned WHERE event_id IS NOT NULL",
                    "CREATE INDEX sensor_event_ids_by_time ON sensor_event_ids (ts_us)",
                    "DROP TABLE sensor_events_unpartitioned",
                ]
        },
        Migration(version: 19, name: "attendance records without reference checks") { db in
            // PostgreSQL only: checking the tenant and device of each record inserted (a trigger and
            // a query per row) was half of a sync batch's insert (21 of 44 ms for 800 records).
            // Records are only written for the device a request just authenticated, under its
            // tenant's lock, and neither tenants nor devices are ever deleted. SQLite's checks are
            // index probes in-process and stay (dropping them would rebuild the table).
            db.engine == .sqlite
                ? []
                : [
                    "ALTER TABLE attendance_records DROP CONSTRAINT IF EXISTS attendance_records_tenant_id_fkey",
                    "ALTER TABLE attendance_records DROP CONSTRAINT IF EXISTS attendance_records_device_id_fkey",
                ]
        },
    ]

    /// Migration 14's table of a rollup level (hours, days): the same rows as the minutes over
    /// longer UTC spans, filled from the finer level, with when each reached its low and high.
    private static func rolledUp(_ level: RollupLevel) -> [String] {
        let (table, length, finer) = (level.table, level.length, level.finer!)
        let (source, column, step) = (finer.table, finer.column, finer.length)
        return [
            """
            CREATE TABLE \(table) (
                sensor TEXT NOT NULL,
                start_us BIGINT NOT NULL,
                entries BIGINT NOT NULL,
                exits BIGINT NOT NULL,
                balance_before BIGINT NOT NULL,
                low BIGINT NOT NULL,
                high BIGINT NOT NULL,
                low_us BIGINT NOT NULL,
                high_us BIGINT NOT NULL,
                area DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (sensor, start_us)
            )
            """,
            """
            INSERT INTO \(table) (sensor, start_us, entries, exits, balance_before, low, high, low_us, high_us, area)
            SELECT sensor, s, SUM(entries), SUM(exits), MIN(opening),
                CASE WHEN MIN(balance_before + low) < MIN(opening) THEN MIN(balance_before + low) - MIN(opening) ELSE 0 END,
                CASE WHEN MAX(balance_before + high) > MIN(opening) THEN MAX(balance_before + high) - MIN(opening) ELSE 0 END,
                s, s, SUM(area + (entries - exits) * ((s + \(length) - \(column) - \(step)) / 1000000.0))
            FROM (
                SELECT f.*, FIRST_VALUE(balance_before) OVER (PARTITION BY sensor, s ORDER BY \(column)) AS opening
                FROM (SELECT r.*, \(column) - (((\(column) % \(length)) + \(length)) % \(length)) AS s FROM \(source) r) AS f
            ) AS g
            GROUP BY sensor, s
            """,
            """
            UPDATE \(table) SET low_us = COALESCE((
                SELECT MIN(r.low_us) FROM \(source) r
                WHERE r.sensor = \(table).sensor AND r.\(column) >= \(table).start_us AND r.\(column) < \(table).start_us + \(length)
                    AND r.balance_before + r.low = \(table).balance_before + \(table).low AND \(table).low < 0), start_us),
            high_us = COALESCE((
                SELECT MIN(r.high_us) FROM \(source) r
                WHERE r.sensor = \(table).sensor AND r.\(column) >= \(table).start_us AND r.\(column) < \(table).start_us + \(length)
                    AND r.balance_before + r.high = \(table).balance_before + \(table).high AND \(table).high > 0), start_us)
            """,
        ]
    }

    /// Applies every migration not yet applied, in one transaction. On PostgreSQL an advisory lock
    /// makes instances that start together take turns; on SQLite the write gate does.
    public static func run(on database: any Database, logger: Logger) async throws {
        let applied = try await database.transaction { db in
            if database.engine == .postgres {
                try await db.raw("SELECT pg_advisory_xact_lock(4242001)").run()
            }
            try await db.raw(
                """
                CREATE TABLE IF NOT EXISTS headcount_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_us BIGINT NOT NULL)
                """
            ).run()
            let done = Set(try await db.raw("SELECT version FROM headcount_migrations").all().map { try $0.decode(column: "version", as: Int.self) })
            var applied: [String] = []
            for migration in all where !done.contains(migration.version) {
                for statement in migration.statements(database) {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await db.raw(
                    """
                    INSERT INTO headcount_migrations (version, name, applied_at_us)
                    VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Timestamp.now().microseconds))
                    """
                ).run()
                applied.append(migration.name)
            }
            return applied
        }
        if !applied.isEmpty {
            logger.info("applied migrations", metadata: ["migrations": "\(applied.joined(separator: ", "))"])
        }
    }
}

/// `headcount migrate`: opens the database, applies pending migrations, closes it.
public func migrate(_ configuration: Configuration, logger: Logger) async throws {
    let database = try await openDatabase(configuration.database, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await database.run() }
        defer { group.cancelAll() }
        try await database.start(migrating: { try await Migrations.run(on: database, logger: logger) }, waitForServer: true)
    }
}
