//! Imports `muon:missing/thing`, which no host provides: refused at deploy.

wit_bindgen::generate!({
    inline: "
        package muon:missing;
        interface thing { ping: func() -> u32; }
        interface entry { run: func() -> u32; }
        world fixture { import thing; export entry; }
    ",
});

struct Fixture;

impl exports::muon::missing::entry::Guest for Fixture {
    fn run() -> u32 {
        muon::missing::thing::ping()
    }
}

export!(Fixture);
