/// The reports' privacy switch (`--privacy-k`): a figure computed from fewer than k people is
/// withheld. Off by default; zero people reveal no one, so an empty bucket is still shown.
struct Privacy: Sendable {
    static let off = Privacy(k: nil)

    let k: Int64?

    func hides(people: Int64) -> Bool { k.map { people > 0 && people < $0 } ?? false }
}
