//! The VRRPv3 state machine (RFC 5798 §6.4), with keepalived's preempt
//! delay, driven by events and an injected clock: it never reads the time
//! or touches a socket, so every transition is tested with exact instants.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::packet::Advert;

#[derive(Debug, Clone)]
pub struct Config {
    pub vrid: u8,
    /// 1 to 254 (255: the owner of the addresses).
    pub priority: u8,
    /// Advertisement interval, centiseconds (1 to 4095).
    pub advert_cs: u16,
    /// Whether a higher-priority backup takes over from a lower-priority
    /// master.
    pub preempt: bool,
    /// After startup, preemption waits this long (keepalived's
    /// `preempt_delay`).
    pub preempt_delay: Duration,
    /// The addresses (the VIPs).
    pub addrs: Vec<Ipv4Addr>,
    /// This router's own address on the interface (ties are broken by it).
    pub primary_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
        }
    }
}

/// What the speaker must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    Send { priority: u8 },
    /// Take the addresses: add them to the interface and announce them
    /// (gratuitous ARP).
    TakeAddresses,
    /// Give the addresses up: remove them from the interface.
    ReleaseAddresses,
    /// The state changed (run the notify hook).
    Became(State),
}

pub struct Machine {
    cfg: Config,
    state: State,
    started: Option<Instant>,
    /// Centiseconds, as learnt from the master.
    master_adver_cs: u16,
    master_down_at: Option<Instant>,
    advert_at: Option<Instant>,
}

fn cs(c: u32) -> Duration {
    Duration::from_millis(u64::from(c) * 10)
}

impl Machine {
    pub fn new(cfg: Config) -> Machine {
        let master_adver_cs = cfg.advert_cs;
        Machine {
            cfg,
            state: State::Initialize,
            started: None,
            master_adver_cs,
            master_down_at: None,
            advert_at: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Skew_Time: ((256 - Priority) * Master_Adver_Interval) / 256.
    pub fn skew(&self) -> Duration {
        cs((256 - u32::from(self.cfg.priority)) * u32::from(self.master_adver_cs) / 256)
    }

    /// Master_Down_Interval: 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        cs(3 * u32::from(self.master_adver_cs)) + self.skew()
    }

    /// When [`Machine::tick`] must be called next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Initialize => None,
            State::Backup => self.master_down_at,
            State::Master => self.advert_at,
        }
    }

    /// The advertisement this router sends now.
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.cfg.vrid,
            priority,
            max_advert_cs: self.cfg.advert_cs,
            addrs: self.cfg.addrs.clone(),
        }
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Send {
            priority: self.cfg.priority,
        });
        out.push(Action::TakeAddresses);
        self.advert_at = Some(now + cs(u32::from(self.cfg.advert_cs)));
        self.master_down_at = None;
        self.state = State::Master;
        out.push(Action::Became(State::Master));
    }

    fn become_backup(&mut self, now: Instant, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.master_down_at = Some(now + self.master_down_interval());
        self.advert_at = None;
        self.state = State::Backup;
        if was_master {
            out.push(Action::ReleaseAddresses);
        }
        out.push(Action::Became(State::Backup));
    }

    /// Startup event.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.started = Some(now);
        self.master_adver_cs = self.cfg.advert_cs;
        if self.cfg.priority == 255 {
            self.become_master(now, &mut out);
        } else {
            self.become_backup(now, &mut out);
        }
        out
    }

    /// Shutdown event: a master says so with priority 0.
    pub fn stop(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Send { priority: 0 });
            out.push(Action::ReleaseAddresses);
        }
        self.state = State::Initialize;
        self.master_down_at = None;
        self.advert_at = None;
        out.push(Action::Became(State::Initialize));
        out
    }

    /// A timer fired (or may have): acts on what is due at `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup if self.master_down_at.is_some_and(|t| now >= t) => {
                self.become_master(now, &mut out);
            }
            State::Master if self.advert_at.is_some_and(|t| now >= t) => {
                out.push(Action::Send {
                    priority: self.cfg.priority,
                });
                self.advert_at = Some(now + cs(u32::from(self.cfg.advert_cs)));
            }
            _ => {}
        }
        out
    }

    fn preempting(&self, now: Instant) -> bool {
        self.cfg.preempt
            && self
                .started
                .is_none_or(|s| now.duration_since(s) >= self.cfg.preempt_delay)
    }

    /// An advertisement for our VRID arrived from `src`.
    pub fn receive(&mut self, now: Instant, adv: &Advert, src: Ipv4Addr) -> Vec<Action> {
        let mut out = Vec::new();
        if adv.vrid != self.cfg.vrid {
            return out;
        }
        match self.state {
            State::Initialize => {}
            State::Backup => {
                if adv.priority == 0 {
                    self.master_down_at = Some(now + self.skew());
                } else if !self.preempting(now) || adv.priority >= self.cfg.priority {
                    self.master_adver_cs = adv.max_advert_cs.max(1);
                    self.master_down_at = Some(now + self.master_down_interval());
                }
                // Else: a lower-priority master, and we preempt: let the
                // timer run out.
            }
            State::Master => {
                if adv.priority == 0 {
                    out.push(Action::Send {
                        priority: self.cfg.priority,
                    });
                    self.advert_at = Some(now + cs(u32::from(self.cfg.advert_cs)));
                } else if adv.priority > self.cfg.priority
                    || (adv.priority == self.cfg.priority && src > self.cfg.primary_ip)
                {
                    self.master_adver_cs = adv.max_advert_cs.max(1);
                    self.become_backup(now, &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(priority: u8, ip: &str) -> Config {
        Config {
            vrid: 51,
            priority,
            advert_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            addrs: vec!["10.0.0.100".parse().unwrap()],
            primary_ip: ip.parse().unwrap(),
        }
    }

    /// Routers on one simulated link with a virtual clock: what one sends,
    /// the others receive at once; a dead router neither sends nor hears.
    struct Link {
        now: Instant,
        routers: Vec<(Machine, bool)>,
    }

    impl Link {
        fn new(cfgs: Vec<Config>) -> Link {
            let now = Instant::now();
            let mut link = Link {
                now,
                routers: cfgs.into_iter().map(|c| (Machine::new(c), true)).collect(),
            };
            for i in 0..link.routers.len() {
                let acts = link.routers[i].0.start(now);
                link.deliver(i, acts);
            }
            link
        }

        fn deliver(&mut self, from: usize, acts: Vec<Action>) {
            let mut queue: Vec<(usize, Action)> = acts.into_iter().map(|a| (from, a)).collect();
            while let Some((i, a)) = queue.pop() {
                if let Action::Send { priority } = a {
                    let adv = self.routers[i].0.advert(priority);
                    let src = self.routers[i].0.config().primary_ip;
                    for j in 0..self.routers.len() {
                        if j != i && self.routers[j].1 {
                            let more = self.routers[j].0.receive(self.now, &adv, src);
                            queue.extend(more.into_iter().map(|a| (j, a)));
                        }
                    }
                }
            }
        }

        /// Advances the clock to `t` (from the start), firing timers in order.
        fn run_until(&mut self, t: Duration, start: Instant) {
            let end = start + t;
            loop {
                let next = self
                    .routers
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, alive))| *alive)
                    .filter_map(|(i, (m, _))| m.deadline().map(|d| (d, i)))
                    .min();
                match next {
                    Some((d, i)) if d <= end => {
                        self.now = d.max(self.now);
                        let acts = self.routers[i].0.tick(self.now);
                        self.deliver(i, acts);
                    }
                    _ => break,
                }
            }
            self.now = end;
        }

        fn states(&self) -> Vec<State> {
            self.routers.iter().map(|(m, _)| m.state()).collect()
        }
    }

    #[test]
    fn skew_and_master_down_interval_follow_the_rfc() {
        let m = Machine::new(cfg(100, "10.0.0.1"));
        // (256 - 100) * 100 / 256 = 60 cs; 3 * 100 + 60 = 360 cs.
        assert_eq!(m.skew(), Duration::from_millis(600));
        assert_eq!(m.master_down_interval(), Duration::from_millis(3600));
        let fast = Machine::new(Config {
            advert_cs: 1,
            ..cfg(254, "10.0.0.1")
        });
        assert_eq!(fast.master_down_interval(), Duration::from_millis(30));
    }

    #[test]
    fn the_higher_priority_wins_and_a_silent_death_fails_over_after_master_down() {
        let mut link = Link::new(vec![cfg(150, "10.0.0.1"), cfg(100, "10.0.0.2")]);
        let t0 = link.now;
        link.run_until(Duration::from_secs(10), t0);
        assert_eq!(link.states(), vec![State::Master, State::Backup]);
        // The master (master since 3.41 s: 3 * 1 s + its skew of 0.41 s,
        // advertising every second) dies silently at 10 s: the backup takes
        // over one Master_Down_Interval (3.6 s) after the last advert it
        // heard (9.41 s), at 13.01 s.
        link.routers[0].1 = false;
        link.run_until(Duration::from_millis(12_950), t0);
        assert_eq!(link.routers[1].0.state(), State::Backup);
        link.run_until(Duration::from_millis(13_050), t0);
        assert_eq!(link.routers[1].0.state(), State::Master);
    }

    #[test]
    fn a_stopping_master_hands_over_within_the_skew() {
        let mut link = Link::new(vec![cfg(150, "10.0.0.1"), cfg(100, "10.0.0.2")]);
        let t0 = link.now;
        link.run_until(Duration::from_secs(5), t0);
        let acts = link.routers[0].0.stop();
        assert_eq!(acts[0], Action::Send { priority: 0 });
        assert!(acts.contains(&Action::ReleaseAddresses));
        link.deliver(0, acts);
        link.routers[0].1 = false;
        // Skew_Time of priority 100: 0.6 s.
        link.run_until(Duration::from_millis(5_550), t0);
        assert_eq!(link.routers[1].0.state(), State::Backup);
        link.run_until(Duration::from_millis(5_650), t0);
        assert_eq!(link.routers[1].0.state(), State::Master);
    }

    #[test]
    fn preemption_takes_back_and_nopreempt_does_not() {
        for preempt in [true, false] {
            let mut link = Link::new(vec![cfg(100, "10.0.0.2")]);
            let t0 = link.now;
            link.run_until(Duration::from_secs(5), t0);
            assert_eq!(link.states(), vec![State::Master]);
            // A higher-priority router comes up.
            let mut m = Machine::new(Config {
                preempt,
                ..cfg(150, "10.0.0.1")
            });
            let acts = m.start(link.now);
            link.routers.push((m, true));
            link.deliver(1, acts);
            link.run_until(Duration::from_secs(15), t0);
            if preempt {
                assert_eq!(link.states(), vec![State::Backup, State::Master]);
            } else {
                assert_eq!(link.states(), vec![State::Master, State::Backup]);
            }
        }
    }

    #[test]
    fn preempt_delay_holds_a_returning_router_back() {
        let mut link = Link::new(vec![cfg(100, "10.0.0.2")]);
        let t0 = link.now;
        link.run_until(Duration::from_secs(5), t0);
        let mut m = Machine::new(Config {
            preempt_delay: Duration::from_secs(10),
            ..cfg(150, "10.0.0.1")
        });
        let acts = m.start(link.now);
        link.routers.push((m, true));
        link.deliver(1, acts);
        link.run_until(Duration::from_secs(14), t0);
        assert_eq!(
            link.states(),
            vec![State::Master, State::Backup],
            "still waiting"
        );
        link.run_until(Duration::from_secs(20), t0);
        assert_eq!(
            link.states(),
            vec![State::Backup, State::Master],
            "preempted after the delay"
        );
    }

    #[test]
    fn equal_priorities_elect_the_higher_address_and_the_owner_starts_master() {
        // Two masters at once (they came up apart): the one that hears an
        // equal priority from a higher address steps down; the other stays.
        let now = Instant::now();
        let mut low = Machine::new(cfg(100, "10.0.0.1"));
        let mut high = Machine::new(cfg(100, "10.0.0.9"));
        for m in [&mut low, &mut high] {
            m.start(now);
            m.tick(now + Duration::from_secs(5));
            assert_eq!(m.state(), State::Master);
        }
        let t = now + Duration::from_secs(6);
        let from_high = high.advert(100);
        let acts = low.receive(t, &from_high, "10.0.0.9".parse().unwrap());
        assert!(acts.contains(&Action::ReleaseAddresses));
        assert_eq!(low.state(), State::Backup);
        let from_low = low.advert(100);
        assert!(
            high.receive(t, &from_low, "10.0.0.1".parse().unwrap())
                .is_empty()
        );
        assert_eq!(high.state(), State::Master);
        // The address owner (priority 255) is master from the start.
        let mut owner = Machine::new(cfg(255, "10.0.0.5"));
        let acts = owner.start(now);
        assert_eq!(owner.state(), State::Master);
        assert!(acts.contains(&Action::TakeAddresses));
    }

    #[test]
    fn ten_millisecond_adverts_fail_over_in_tens_of_milliseconds() {
        let fast = |p, ip| Config {
            advert_cs: 1,
            ..cfg(p, ip)
        };
        let mut link = Link::new(vec![fast(150, "10.0.0.1"), fast(100, "10.0.0.2")]);
        let t0 = link.now;
        link.run_until(Duration::from_millis(500), t0);
        assert_eq!(link.states(), vec![State::Master, State::Backup]);
        link.routers[0].1 = false;
        // 3 * 10 ms + skew (156 * 1 / 256 = 0 cs): 30 ms.
        link.run_until(Duration::from_millis(531), t0);
        assert_eq!(link.routers[1].0.state(), State::Master);
    }
}
