"""A schema model built by replaying statements: tables, column types, NOT NULL, indexes,
CHECK constraints (validated or not), partitioning, and which migration created a table.

Rules read the model as it stood *before* the statement they judge; the engine applies the
statement afterwards. The model is also loadable from a ``pg_dump --schema-only`` file.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from pgshift.lint.nodes import (
    Node,
    cmds,
    column_constraints,
    qualified,
    relname,
    strings,
    type_of,
)
from pgshift.migrations.tree import ParseError, parse, walk


@dataclass(frozen=True)
class TableSize:
    """A table's estimated rows and bytes on the target server (rules scale severity by it)."""

    rows: int
    bytes: int


@dataclass
class Column:
    name: str
    type: str
    typmods: tuple[int, ...] = ()
    array: bool = False
    not_null: bool = False


@dataclass
class Check:
    name: str
    not_null_column: str | None  # set when the expression is ``col IS NOT NULL``
    validated: bool


@dataclass
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass
class Table:
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    foreign_keys: set[str] = field(default_factory=set)  # names only: a default name must not reuse one
    partitioned: bool = False
    created_in: str | None = None  # label of the migration (or file) that created it
    stub: bool = False  # only seen in ALTER TABLE: its columns and indexes are unknown

    def not_null_check(self, column: str) -> Check | None:
        for check in self.checks.values():
            if check.not_null_column == column and check.validated:
                return check
        return None

    def has_index_on(self, columns: list[str]) -> bool:
        """Whether some index's leading columns are ``columns`` (in any order)."""
        wanted = set(columns)
        return any(set(ix.columns[: len(columns)]) == wanted for ix in self.indexes.values())


def _nulltest_column(expr: Node | None) -> str | None:
    test = (expr or {}).get("NullTest")
    if not test or test.get("nulltesttype") != "IS_NOT_NULL":
        return None
    fields = strings(test.get("arg", {}).get("ColumnRef", {}).get("fields"))
    return fields[-1] if fields else None


def _bare(name: str) -> str:
    """A table's or index's name without its schema."""
    return name.rsplit(".", 1)[-1]


NAMEDATALEN = 64  # PostgreSQL's identifiers hold NAMEDATALEN - 1 bytes


def _clip(name: str, size: int) -> str:
    """The longest prefix of ``name`` in ``size`` UTF-8 bytes that ends on a whole character (pg_mbcliplen)."""
    return name.encode()[:size].decode(errors="ignore")


def object_name(name1: str, name2: str | None, label: str) -> str:
    """PostgreSQL's makeObjectName: ``name1_name2_label`` in NAMEDATALEN - 1 bytes, the label kept whole and
    the longer of the two names shortened first."""
    room = NAMEDATALEN - 1 - (len(label) + 1) - (1 if name2 is not None else 0)
    size1, size2 = len(name1.encode()), len(name2.encode()) if name2 is not None else 0
    while size1 + size2 > room:
        if size1 > size2:
            size1 -= 1
        else:
            size2 -= 1
    parts = [_clip(name1, size1)] + ([_clip(name2, size2)] if name2 is not None else []) + [label]
    return "_".join(parts)


def _check_column(expr: Node | None) -> str | None:
    """The column a CHECK expression names, when it names exactly one (what PostgreSQL puts in the
    default name, ``t_col_check``; with none or several it is ``t_check``)."""
    found = {fields[-1] for node in walk(expr or {}) if "ColumnRef" in node
             and (fields := strings(node["ColumnRef"].get("fields")))}
    return next(iter(found)) if len(found) == 1 else None


def column_names(columns: list[str]) -> str:
    """The columns joined by ``_``, stopping once NAMEDATALEN bytes are reached (PostgreSQL's
    ChooseForeignKeyConstraintNameAddition; ChooseIndexNameAddition does the same after numbering)."""
    joined = ""
    for name in columns:
        joined = f"{joined}_{name}" if joined else name
        if len(joined.encode()) >= NAMEDATALEN:
            break
    return joined


def index_column_names(elems: list[str]) -> str:
    """PostgreSQL's ChooseIndexNameAddition over ChooseIndexColumnNames: the columns joined by ``_``, a repeated
    column numbered (``a_a1``), stopping once NAMEDATALEN bytes are reached."""
    chosen: list[str] = []
    for original in elems:
        name, n = original, 0
        while name in chosen:
            n += 1
            name = _clip(original, NAMEDATALEN - 1 - len(str(n))) + str(n)
        chosen.append(name)
    return column_names(chosen)


def _expr_name(expr: Node) -> str | None:
    """PostgreSQL's FigureIndexColname for the common expressions: a function's or a column's name."""
    kind, body = next(iter(expr.items()))
    if kind == "FuncCall":
        return strings(body.get("funcname"))[-1]
    if kind == "ColumnRef":
        fields = strings(body.get("fields"))
        return fields[-1] if fields else None
    if kind == "TypeCast":
        return _expr_name(body.get("arg") or {"": {}}) or strings(body.get("typeName", {}).get("names"))[-1]
    return {"CoalesceExpr": "coalesce", "CaseExpr": "case", "A_ArrayExpr": "array", "RowExpr": "row"}.get(kind)


def _elem_names(params: list[Node], figure: bool = False) -> list[str]:
    """The names PostgreSQL gives index elements in a default index name: the column, or ``expr`` for an
    expression (CREATE INDEX, ``figure``, names an expression after its function or column first)."""
    names = []
    for param in params:
        elem = param.get("IndexElem", {})
        expr = elem.get("expr")
        names.append(str(elem.get("name") or (figure and expr and _expr_name(expr)) or "expr"))
    return names


def index_key(table: str, index: str) -> str:
    """How :attr:`Schema.index_tables` names the index ``index`` (unqualified) of ``table``: in the
    table's schema, ``public`` left off."""
    return f"{table.rsplit('.', 1)[0]}.{index}" if "." in table else index


class Schema:
    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        # index -> its table. An index lives in its table's schema, so it is keyed by that schema and its
        # name, written as tables are ("s.idx", "idx" in public): DROP INDEX s.idx finds the index that
        # CREATE INDEX idx ON s.t made, and an unqualified name means public (the default search_path).
        self.index_tables: dict[str, str] = {}
        self.enum_types: set[str] = set()

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def column(self, table: str, column: str) -> Column | None:
        t = self.tables.get(table)
        return t.columns.get(column) if t else None

    # -- replay -------------------------------------------------------------------------
    def apply(self, node: Node, origin: str | None) -> None:
        k = next(iter(node))
        handler = _HANDLERS.get(k)
        if handler is not None:
            handler(self, node[k], origin)

    def _add_column(self, table: Table, coldef: Node) -> None:
        name = str(coldef.get("colname", ""))
        type_name, mods, array = type_of(coldef.get("typeName"))
        col = Column(name, type_name, mods, array, bool(coldef.get("is_not_null")))
        for con in column_constraints(coldef):
            ctype = con.get("contype")
            if ctype in ("CONSTR_NOTNULL", "CONSTR_PRIMARY", "CONSTR_IDENTITY"):
                col.not_null = True
            if ctype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
                ix = con.get("conname") or self._default_name(
                    table, None if ctype == "CONSTR_PRIMARY" else name, "pkey" if ctype == "CONSTR_PRIMARY" else "key",
                    constraint=True)
                self._add_index(table, Index(str(ix), (name,), True))
        if type_name in ("serial", "bigserial", "smallserial", "serial4", "serial8"):
            col.not_null = True
        table.columns[name] = col

    def _default_name(self, table: Table, columns: str | None, label: str, constraint: bool = False,
                      chosen: Collection[str] = ()) -> str:
        """The name PostgreSQL gives an index declared without one (ChooseRelationName): made by
        :func:`object_name`, then numbered (``t_pkey1``, ``t_pkey2``, ...) while a relation of the table's schema
        (or, for a constraint's index, a constraint of that table) already has it."""
        base, label_n, n = _bare(table.name), label, 0
        while True:
            candidate = object_name(base, columns, label_n)
            key = index_key(table.name, candidate)
            taken = key in self.index_tables or key in self.tables or candidate == base or candidate in chosen
            if not taken and not (constraint and (candidate in table.checks or candidate in table.foreign_keys)):
                return candidate
            n += 1
            label_n = f"{label}{n}"

    def constraint_name(self, table_name: str, con: Node, chosen: Collection[str] = ()) -> str | None:
        """A CHECK's or FOREIGN KEY's name: its own, or the one PostgreSQL gives it (``t_col_check``,
        ``t_check``, ``t_a_b_fkey``, numbered while the table has it); None for other kinds without one."""
        return self._constraint_name(self.tables.get(table_name) or Table(table_name, stub=True), con, chosen=chosen)

    def _constraint_name(self, table: Table, con: Node, column: str | None = None,
                         chosen: Collection[str] = ()) -> str | None:
        """``column``: the column a column constraint is declared on (a REFERENCES there lists no columns)."""
        if con.get("conname"):
            return str(con["conname"])
        if con.get("contype") == "CONSTR_CHECK":
            return self._default_name(table, _check_column(con.get("raw_expr")), "check", constraint=True,
                                      chosen=chosen)
        fk_columns = strings(con.get("fk_attrs")) or ([column] if column else [])
        if con.get("contype") == "CONSTR_FOREIGN" and fk_columns:
            return self._default_name(table, column_names(fk_columns), "fkey", constraint=True, chosen=chosen)
        return None

    def _add_column_constraints(self, table: Table, coldef: Node) -> None:
        """A column's CHECK and REFERENCES constraints (its key constraints are its indexes, added with it)."""
        for con in column_constraints(coldef):
            if con.get("contype") in ("CONSTR_CHECK", "CONSTR_FOREIGN"):
                self._add_constraint(table, con, str(coldef.get("colname", "")))

    def _add_index(self, table: Table, index: Index) -> None:
        table.indexes[index.name] = index
        self.index_tables[index_key(table.name, index.name)] = table.name

    def _add_constraint(self, table: Table, con: Node, column: str | None = None) -> None:
        ctype = con.get("contype")
        conname = con.get("conname")
        if ctype == "CONSTR_CHECK":
            name = str(self._constraint_name(table, con))
            validated = not con.get("skip_validation")
            table.checks[name] = Check(name, _nulltest_column(con.get("raw_expr")), validated)
        elif ctype in ("CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_EXCLUSION"):
            keys = tuple(strings(con.get("keys")))
            if con.get("indexname"):
                # ADD CONSTRAINT ... USING INDEX: the index becomes the constraint's, renamed to its name if it has one.
                existing = table.indexes.pop(str(con["indexname"]), None)
                if existing is not None:
                    self.index_tables.pop(index_key(table.name, existing.name), None)
                keys = existing.columns if existing else keys
                name = str(conname or con["indexname"])
            elif conname:
                name = str(conname)
            elif ctype == "CONSTR_PRIMARY":
                name = self._default_name(table, None, "pkey", constraint=True)
            else:
                elems = [*keys, *strings(con.get("including"))] if ctype == "CONSTR_UNIQUE" else _elem_names(
                    [pair.get("List", {}).get("items", [{}])[0] for pair in con.get("exclusions") or ()])
                label = "key" if ctype == "CONSTR_UNIQUE" else "excl"
                name = self._default_name(table, index_column_names(elems), label, constraint=True)
            self._add_index(table, Index(name, keys, ctype != "CONSTR_EXCLUSION"))
            if ctype == "CONSTR_PRIMARY":
                for key in keys:
                    if key in table.columns:
                        table.columns[key].not_null = True
        elif ctype == "CONSTR_FOREIGN":
            if (fk := self._constraint_name(table, con, column)) is not None:
                table.foreign_keys.add(fk)
        elif ctype == "CONSTR_NOTNULL":
            for key in strings(con.get("keys")):
                if key in table.columns and not con.get("skip_validation"):
                    table.columns[key].not_null = True

    def _on_CreateStmt(self, stmt: Node, origin: str | None) -> None:
        name = relname(stmt.get("relation"))
        table = Table(name, partitioned=bool(stmt.get("partspec")), created_in=origin)
        for elt in stmt.get("tableElts") or ():
            if "ColumnDef" in elt:
                self._add_column(table, elt["ColumnDef"])
                self._add_column_constraints(table, elt["ColumnDef"])
            elif "Constraint" in elt:
                self._add_constraint(table, elt["Constraint"])
            elif "TableLikeClause" in elt:
                source = self.tables.get(relname(elt["TableLikeClause"].get("relation")))
                if source:
                    table.columns.update({k: Column(**vars(v)) for k, v in source.columns.items()})
        self.tables[name] = table

    def _on_CreateTableAsStmt(self, stmt: Node, origin: str | None) -> None:
        into = stmt.get("into", {}).get("IntoClause", stmt.get("into", {}))
        name = relname(into.get("rel"))
        if name:
            self.tables[name] = Table(name, created_in=origin)

    def _on_AlterTableStmt(self, stmt: Node, origin: str | None) -> None:
        name = relname(stmt.get("relation"))
        table = self.tables.get(name)
        if table is None:
            # Track constraints on tables the history does not show, so a CHECK added and validated
            # earlier still proves NOT NULL.
            table = self.tables[name] = Table(name, stub=True)
        for cmd in cmds(stmt):
            self._alter(table, cmd)

    def _alter(self, table: Table, cmd: Node) -> None:
        sub = cmd.get("subtype")
        definition = cmd.get("def") or {}
        col_name = str(cmd.get("name", ""))
        if sub == "AT_AddColumn" and "ColumnDef" in definition:
            self._add_column(table, definition["ColumnDef"])
            self._add_column_constraints(table, definition["ColumnDef"])
        elif sub == "AT_DropColumn":
            table.columns.pop(col_name, None)
        elif sub == "AT_AlterColumnType" and col_name in table.columns:
            type_name, mods, array = type_of(definition.get("ColumnDef", {}).get("typeName"))
            column = table.columns[col_name]
            column.type, column.typmods, column.array = type_name, mods, array
        elif sub == "AT_SetNotNull" and col_name in table.columns:
            table.columns[col_name].not_null = True
        elif sub == "AT_DropNotNull" and col_name in table.columns:
            table.columns[col_name].not_null = False
        elif sub == "AT_AddConstraint" and "Constraint" in definition:
            self._add_constraint(table, definition["Constraint"])
        elif sub == "AT_ValidateConstraint" and col_name in table.checks:
            table.checks[col_name].validated = True
        elif sub == "AT_DropConstraint":
            table.checks.pop(col_name, None)
            table.foreign_keys.discard(col_name)
            if table.indexes.pop(col_name, None):
                self.index_tables.pop(index_key(table.name, col_name), None)

    def _on_IndexStmt(self, stmt: Node, origin: str | None) -> None:
        table = self.tables.get(relname(stmt.get("relation")))
        if table is None:
            return
        columns = tuple(
            str(p["IndexElem"].get("name") or "(expr)") for p in stmt.get("indexParams") or ()
        )
        name = str(stmt.get("idxname") or self._default_name(
            table, index_column_names(_elem_names([*(stmt.get("indexParams") or ()),
                                                   *(stmt.get("indexIncludingParams") or ())], figure=True)), "idx"))
        self._add_index(table, Index(name, columns, bool(stmt.get("unique"))))

    def _on_DropStmt(self, stmt: Node, origin: str | None) -> None:
        remove = stmt.get("removeType")
        for obj in stmt.get("objects") or ():
            name = qualified(strings(obj.get("List", {}).get("items")))
            if remove in ("OBJECT_TABLE", "OBJECT_MATVIEW"):
                self._forget_table(name)
            elif remove == "OBJECT_INDEX" and name in self.index_tables:
                owner = self.tables.get(self.index_tables.pop(name))
                if owner:
                    owner.indexes.pop(_bare(name), None)
            elif remove == "OBJECT_SCHEMA" and stmt.get("behavior") == "DROP_CASCADE":
                schema = str(obj.get("String", {}).get("sval", ""))
                for table_name in [t for t in self.tables if "." in t and t.rsplit(".", 1)[0] == schema]:
                    self._forget_table(table_name)

    def _forget_table(self, name: str) -> None:
        table = self.tables.pop(name, None)
        if table is not None:
            for ix in table.indexes:
                self.index_tables.pop(index_key(table.name, ix), None)

    def _move_table(self, table: Table, new_name: str) -> None:
        """Rename ``table`` (or move it to another schema): its indexes go with it, so the index -> table
        map names the table by its new name, and the indexes by their new schema."""
        for ix in table.indexes:
            self.index_tables.pop(index_key(table.name, ix), None)
        self.tables.pop(table.name, None)
        table.name = new_name
        self.tables[new_name] = table
        for ix in table.indexes:
            self.index_tables[index_key(new_name, ix)] = new_name

    def _rename_index(self, key: str, new: str) -> None:
        owner = self.tables.get(self.index_tables.pop(key))
        if owner is None:
            return
        index = owner.indexes.pop(_bare(key), None)
        if index is not None:
            index.name = new
            self._add_index(owner, index)

    def _on_RenameStmt(self, stmt: Node, origin: str | None) -> None:
        name = relname(stmt.get("relation"))
        table = self.tables.get(name)
        new = str(stmt.get("newname", ""))
        kind = stmt.get("renameType")
        if not new:
            return
        if kind in ("OBJECT_INDEX", "OBJECT_TABLE") and table is None and name in self.index_tables:
            self._rename_index(name, new)  # ALTER TABLE may rename an index too
        elif table is None:
            return
        elif kind == "OBJECT_TABLE":
            schema = name.rsplit(".", 1)[0] + "." if "." in name else ""
            self._move_table(table, schema + new)
        elif kind == "OBJECT_COLUMN" and stmt.get("subname") in table.columns:
            column = table.columns.pop(str(stmt["subname"]))
            column.name = new
            table.columns[new] = column
        elif kind == "OBJECT_TABCONSTRAINT" and stmt.get("subname") in table.indexes:
            # A primary key's, unique or exclusion constraint's index takes the constraint's new name.
            self._rename_index(index_key(table.name, str(stmt["subname"])), new)

    def _on_AlterObjectSchemaStmt(self, stmt: Node, origin: str | None) -> None:
        if stmt.get("objectType") not in ("OBJECT_TABLE", "OBJECT_MATVIEW"):
            return
        table = self.tables.get(relname(stmt.get("relation")))
        schema = str(stmt.get("newschema", ""))
        if table is not None and schema:
            self._move_table(table, qualified([schema, _bare(table.name)]))

    def _on_CreateEnumStmt(self, stmt: Node, origin: str | None) -> None:
        self.enum_types.add(qualified(strings(stmt.get("typeName"))))

    # -- loading ------------------------------------------------------------------------
    def load_sql(self, text: str, origin: str | None = None) -> None:
        """Replay every statement of ``text`` (for example ``pg_dump --schema-only`` output)."""
        try:
            nodes = parse(text)
        except ParseError:
            return
        for node in nodes:
            self.apply(node, origin)


# Statement kinds the model replays, each with its _on_<Kind> method.
_HANDLERS: dict[str, Callable[[Schema, Node, str | None], None]] = {
    name[len("_on_"):]: method for name, method in vars(Schema).items() if name.startswith("_on_")}


def schema_from_dump(path: str) -> Schema:
    """A model from a ``pg_dump --schema-only`` file (psql meta-commands are dropped)."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("\\")]
    schema = Schema()
    schema.load_sql("".join(lines), origin=None)
    return schema
