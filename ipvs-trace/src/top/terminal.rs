//! The terminal while `top` shows its view: raw mode (keys arrive one by one, Ctrl-C as a key),
//! the alternate screen (the shell's screen comes back untouched) and a hidden cursor, all
//! undone by [`Screen`]'s drop and, for a panic, by a hook that runs before the panic message
//! is printed (so the message lands on the normal screen, readable).

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::mpsc;

/// Whether the terminal is ours right now: restoring twice would print the sequences twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The terminal, taken over for the view.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Takes the terminal over. On failure it is given back as it was.
    pub fn enter() -> io::Result<Screen> {
        install_panic_hook();
        enable_raw_mode()?;
        TAKEN.store(true, Ordering::SeqCst);
        let taken = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match taken {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                restore();
                Err(err)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back: cooked mode, the normal screen, the cursor shown. Does nothing
/// when it is not taken.
fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        // Nothing useful to do if these fail: the terminal is gone or was never one.
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// Restores the terminal before the default hook prints the panic message.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// What the keyboard (and the terminal) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// `q`, `Q`, Esc or Ctrl-C.
    Quit,
    /// The terminal was resized: draw again now.
    Redraw,
    /// Reading the terminal failed; the view cannot be controlled any more.
    Failed(String),
}

/// Maps a terminal event to what it asks for (`None`: nothing).
#[must_use]
pub fn input_of(event: &Event) -> Option<Input> {
    match event {
        Event::Key(key) if key.kind == KeyEventKind::Press => {
            let ctrl_c =
                key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
            let quit = matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc);
            (ctrl_c || quit).then_some(Input::Quit)
        }
        Event::Resize(..) => Some(Input::Redraw),
        _ => None,
    }
}

/// Reads the terminal on a thread of its own (crossterm's reads block) and sends what the keys
/// ask for. The thread ends after a quit, a failure, or once the receiver is gone.
#[must_use]
pub fn spawn_input() -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Polled with a timeout so the thread notices a closed channel.
        while !tx.is_closed() {
            let ready = match event::poll(Duration::from_millis(100)) {
                Ok(ready) => ready,
                Err(err) => {
                    let _ = tx.send(Input::Failed(err.to_string()));
                    return;
                }
            };
            if !ready {
                continue;
            }
            match event::read() {
                Ok(event) => match input_of(&event) {
                    Some(Input::Quit) => {
                        let _ = tx.send(Input::Quit);
                        return;
                    }
                    Some(input) => {
                        let _ = tx.send(input);
                    }
                    None => {}
                },
                Err(err) => {
                    let _ = tx.send(Input::Failed(err.to_string()));
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    #[test]
    fn quit_keys_and_resize() {
        let key = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
        for quit in [
            key(KeyCode::Char('q'), KeyModifiers::NONE),
            key(KeyCode::Char('Q'), KeyModifiers::SHIFT),
            key(KeyCode::Esc, KeyModifiers::NONE),
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
        ] {
            assert_eq!(input_of(&quit), Some(Input::Quit), "{quit:?}");
        }
        assert_eq!(input_of(&key(KeyCode::Char('c'), KeyModifiers::NONE)), None);
        assert_eq!(input_of(&key(KeyCode::Up, KeyModifiers::NONE)), None);
        assert_eq!(input_of(&Event::Resize(80, 24)), Some(Input::Redraw));
        let release = Event::Key(KeyEvent {
            kind: KeyEventKind::Release,
            ..KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)
        });
        assert_eq!(input_of(&release), None);
    }
}
