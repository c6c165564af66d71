pub const ROLES: &[procom_testkit::Role] = &[];
pub fn trials() -> Vec<procom_testkit::Trial> {
    vec![]
}
