//! Function prototypes: what a kernel function takes and returns, as C spells it.
//!
//! A kprobe reads its arguments by position and a kretprobe its return value by register; if a
//! kernel changed the function's signature, the probe would read the wrong thing without any
//! error. The loader compares the prototype in BTF with the shape each probe was written for
//! and skips a probe that does not fit (`loader::probes`); `ipvs-trace check` prints both.

use super::{Btf, BtfError, Kind, MAX_DEPTH};

/// A function's prototype with every type rendered as C spells it, modifiers kept
/// (`const struct sk_buff *`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub ret: String,
    /// `(name, type)` per parameter, in order; names may be empty.
    pub params: Vec<(String, String)>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (", self.ret)?;
        for (i, (name, ty)) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let sep = if ty.ends_with('*') { "" } else { " " };
            write!(f, "{ty}{sep}{name}")?;
        }
        f.write_str(")")
    }
}

impl Btf {
    /// The prototype of function `name` (`BTF_KIND_FUNC`), here or in the base; `Ok(None)`
    /// when no such function is described.
    pub fn function_signature(&self, name: &str) -> Result<Option<Signature>, BtfError> {
        let mut blob = Some(self);
        let func = loop {
            let Some(b) = blob else {
                return Ok(None);
            };
            if let Some(&id) = b.index().functions.get(name) {
                break id;
            }
            blob = b.base.as_deref();
        };
        let proto_id = self.ty(func)?.size_or_target;
        let proto = self.ty(proto_id)?;
        if proto.kind != Kind::FuncProto {
            return Err(BtfError::BadHeader {
                reason: format!(
                    "function {name} (#{func}) refers to #{proto_id}, a {}, not a prototype",
                    proto.kind.name()
                ),
            });
        }
        let ret = self.type_name(proto.size_or_target, 0)?;
        let mut params = Vec::new();
        for i in 0..proto.vlen() as usize {
            let (Some(name_off), Some(type_id)) =
                (proto.trailing_u32(2 * i), proto.trailing_u32(2 * i + 1))
            else {
                return Err(BtfError::BadTypeId { id: proto_id });
            };
            let param = String::from_utf8_lossy(self.str_bytes(name_off)?).into_owned();
            params.push((param, self.type_name(type_id, 0)?));
        }
        Ok(Some(Signature { ret, params }))
    }

    /// Type `id` as C spells it in a declaration (without a declarator name).
    fn type_name(&self, id: u32, depth: u32) -> Result<String, BtfError> {
        if id == 0 {
            return Ok("void".to_owned());
        }
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id });
        }
        let t = self.ty(id)?;
        let name = || -> Result<String, BtfError> {
            Ok(String::from_utf8_lossy(self.str_bytes(t.name_off)?).into_owned())
        };
        let inner = |target| self.type_name(target, depth + 1);
        Ok(match t.kind {
            Kind::Int | Kind::Float | Kind::Typedef => name()?,
            // A forward declaration says union with its kind flag, struct without.
            Kind::Union => format!("union {}", name()?),
            Kind::Fwd if t.kind_flag() => format!("union {}", name()?),
            Kind::Struct | Kind::Fwd => format!("struct {}", name()?),
            Kind::Enum | Kind::Enum64 => format!("enum {}", name()?),
            Kind::Ptr => {
                let target = inner(t.size_or_target)?;
                if target.ends_with('*') {
                    format!("{target}*")
                } else {
                    format!("{target} *")
                }
            }
            Kind::Const => format!("const {}", inner(t.size_or_target)?),
            Kind::Volatile => format!("volatile {}", inner(t.size_or_target)?),
            Kind::Restrict | Kind::TypeTag => inner(t.size_or_target)?,
            Kind::Array => {
                let elem = t.trailing_u32(0).ok_or(BtfError::BadTypeId { id })?;
                format!("{}[]", inner(elem)?)
            }
            Kind::FuncProto => "(function)".to_owned(),
            Kind::Func | Kind::Var | Kind::Datasec | Kind::DeclTag => {
                return Err(BtfError::Unsized {
                    id,
                    kind: t.kind.name(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::builder::Builder;
    use super::*;

    #[test]
    fn prototypes_render_as_c() {
        let mut b = Builder::base();
        let int = b.int("int", 4);
        let skb = b.structure("sk_buff", 8, &[]);
        let const_skb = b.constant(skb);
        let skb_ptr = b.ptr(const_skb);
        let conn = b.fwd("ip_vs_conn");
        let conn_ptr = b.ptr(conn);
        let int_ptr = b.ptr(int);
        let int_ptr_ptr = b.ptr(int_ptr);
        let proto = b.func_proto(
            conn_ptr,
            &[
                ("cp", conn_ptr),
                ("direction", int),
                ("skb", skb_ptr),
                ("", int_ptr_ptr),
            ],
        );
        b.func("tcp_state_transition", proto);
        let void_proto = b.func_proto(0, &[]);
        b.func("nothing", void_proto);
        let btf = Btf::parse(&b.build()).unwrap();
        let sig = btf
            .function_signature("tcp_state_transition")
            .unwrap()
            .unwrap();
        assert_eq!(sig.ret, "struct ip_vs_conn *");
        assert_eq!(
            sig.params,
            [
                ("cp".into(), "struct ip_vs_conn *".into()),
                ("direction".into(), "int".into()),
                ("skb".into(), "const struct sk_buff *".into()),
                (String::new(), "int **".into()),
            ]
        );
        assert_eq!(
            sig.to_string(),
            "struct ip_vs_conn * (struct ip_vs_conn *cp, int direction, const struct sk_buff *skb, int **)"
        );
        let none = btf.function_signature("nothing").unwrap().unwrap();
        assert_eq!((none.ret.as_str(), none.params.len()), ("void", 0));
        assert_eq!(btf.function_signature("absent").unwrap(), None);
    }

    #[test]
    fn split_btf_finds_functions_and_types_of_the_base() {
        let mut base = Builder::base();
        let int = base.int("int", 4);
        let base_btf = std::sync::Arc::new(Btf::parse(&base.build()).unwrap());
        let mut split = Builder::split(&base);
        let proto = split.func_proto(int, &[("x", int)]);
        split.func("ip_vs_schedule", proto);
        let btf = Btf::parse_split(&split.build(), base_btf).unwrap();
        let sig = btf.function_signature("ip_vs_schedule").unwrap().unwrap();
        assert_eq!(sig.to_string(), "int (int x)");
    }
}
