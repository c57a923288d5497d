import ServiceLifecycle

/// The feed as a service: it paces the streams, sends their heartbeats and runs the relay.
extension ChangeFeed {
    /// Applies `change` to every subscriber and wakes those it gives something to write: every
    /// flush interval each one rests, every heartbeat each one has a heartbeat due.
    private func wake(_ change: (inout Subscriber) -> Void) {
        let woken = state.withLock { state in
            state.subscribers.indices.compactMap { i in
                change(&state.subscribers[i])
                return state.subscribers[i].wakeIfDue()
            }
        }
        woken.forEach { $0.resume(returning: .again) }
    }

    /// Paces the streams and sends heartbeats (and runs the relay) until graceful shutdown, then
    /// ends every subscription.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let relay = self.relay {
                    group.addTask {
                        // Restarted every second; said once per outage (a run of under 5 s is the same outage).
                        var failing = false
                        while !Task.isCancelled {
                            let started = ContinuousClock.now
                            do { try await relay.run(into: self) } catch {
                                if !failing || ContinuousClock.now - started > .seconds(5), !Task.isShuttingDownGracefully {
                                    self.logger.warning("change relay stopped: \(String(reflecting: error)); restarting every second")
                                }
                                failing = true
                            }
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                }
                group.addTask {
                    // A tenth of the streams' turns come each tenth of the interval, so that a busy
                    // feed's writes are spread over it instead of all landing together.
                    var tick = 0
                    while (try? await Task.sleep(for: self.flushInterval / 10)) != nil {
                        tick += 1
                        self.wake { if $0.id % 10 == tick % 10 { $0.rested = true } }
                    }
                }
                group.addTask {
                    while (try? await Task.sleep(for: self.heartbeat)) != nil { self.wake { $0.heartbeatDue = true } }
                }
                await group.waitForAll()
            }
        }
        let readers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return state.subscribers.compactMap(\.reader)
        }
        readers.forEach { $0.resume(returning: .end) }
    }
}
